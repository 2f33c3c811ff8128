import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type Client, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CsiError } from '../../driver/src/csi/errors.js';
import { IdentityService } from '../../driver/src/csi/identity-service.js';
import { NodeService } from '../../driver/src/csi/node-service.js';
import { parseCsiEndpoint, startCsiServer, type CsiServer } from '../../driver/src/csi/server.js';
import type { VolumePublisher } from '../../driver/src/manager/volume-publisher.js';
import { loadProtos } from '../../driver/src/proto/load.js';
import type { NodePublishVolumeRequest } from '../../driver/src/proto/csi-messages.js';
import { DEFAULT_LAYOUT_OPTIONS, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';

const protos = loadProtos();
const UID = '0d7c6f3e-8a4b-4c61-9d0e-5b7a2c1f9e88';

class FakePublisher implements VolumePublisher {
  readonly published: { spec: VolumeSpec; signal: AbortSignal | undefined }[] = [];
  readonly unpublished: [string, string][] = [];
  onPublish: (spec: VolumeSpec, signal: AbortSignal | undefined) => Promise<void> = async () => {};
  onUnpublish: () => Promise<void> = async () => {};

  async publish(spec: VolumeSpec, signal?: AbortSignal): Promise<void> {
    this.published.push({ spec, signal });
    await this.onPublish(spec, signal);
  }

  async unpublish(volumeId: string, targetPath: string): Promise<void> {
    this.unpublished.push([volumeId, targetPath]);
    await this.onUnpublish();
  }
}

interface LogEntry {
  level: string;
  obj: object;
  msg: string | undefined;
}

function captureLogger(entries: LogEntry[]) {
  const at = (level: string) => (obj: object, msg?: string) => {
    entries.push({ level, obj, msg });
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

type UnaryMethod = (request: object, callback: (err: ServiceError | null, response: object) => void) => ClientUnaryCall;

function rpc(client: Client, method: string, request: object = {}): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, UnaryMethod>)[method];
    if (!fn) throw new Error(`client has no ${method}`);
    fn.call(client, request, (err, response) => (err ? reject(err) : resolve(response as Record<string, unknown>)));
  });
}

async function rpcError(client: Client, method: string, request: object = {}): Promise<ServiceError> {
  try {
    await rpc(client, method, request);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error(`${method} unexpectedly succeeded`);
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('CSI gRPC server over a unix socket', () => {
  let dir: string;
  let kubeletRoot: string;
  let targetPath: string;
  let socketPath: string;
  let server: CsiServer;
  let publisher: FakePublisher;
  let ready = true;
  let readyError: Error | null = null;
  const logs: LogEntry[] = [];
  let identityClient: Client;
  let nodeClient: Client;
  let controllerClient: Client;

  function publishRequest(): NodePublishVolumeRequest {
    return {
      volume_id: 'csi-abc',
      target_path: targetPath,
      volume_capability: {
        mount: { fs_type: '', mount_flags: ['nosuid'], volume_mount_group: '1234' },
        access_mode: { mode: 'SINGLE_NODE_WRITER' },
      },
      readonly: true,
      secrets: { password: 'SECRET-VALUE' },
      volume_context: {
        'csi.storage.k8s.io/ephemeral': 'true',
        'csi.storage.k8s.io/pod.name': 'web-0',
        'csi.storage.k8s.io/pod.namespace': 'shop',
        'csi.storage.k8s.io/pod.uid': UID,
        'csi.storage.k8s.io/serviceAccount.name': 'web',
        'csi.storage.k8s.io/serviceAccount.tokens': '{"aud":{"token":"SA-TOKEN-VALUE"}}',
        'csi.spire.io/svid-file': 'tls.crt',
      },
    };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'csi-server-'));
    kubeletRoot = join(dir, 'kubelet');
    const volumeDir = join(kubeletRoot, 'pods', UID, 'volumes', 'kubernetes.io~csi', 'spiffe');
    await mkdir(volumeDir, { recursive: true });
    targetPath = join(volumeDir, 'mount');
    socketPath = join(dir, 'plugin', 'csi.sock');
    publisher = new FakePublisher();
    server = await startCsiServer({
      endpoint: `unix://${socketPath}`,
      identity: new IdentityService({
        isReady: () => {
          if (readyError) throw readyError;
          return ready;
        },
      }),
      node: new NodeService({ nodeId: 'node-7', kubeletRoot, publisher }),
      logger: captureLogger(logs),
      protos,
    });
    const address = `unix://${socketPath}`;
    identityClient = new protos.csi.Identity(address, credentials.createInsecure());
    nodeClient = new protos.csi.Node(address, credentials.createInsecure());
    controllerClient = new protos.csi.Controller(address, credentials.createInsecure());
  });

  afterAll(async () => {
    identityClient?.close();
    nodeClient?.close();
    controllerClient?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    publisher.published.length = 0;
    publisher.unpublished.length = 0;
    publisher.onPublish = async () => {};
    publisher.onUnpublish = async () => {};
    logs.length = 0;
    ready = true;
    readyError = null;
  });

  describe('Identity', () => {
    it('GetPluginInfo reports the default name and the package version', async () => {
      const pkg = JSON.parse(await readFile(new URL('../../driver/package.json', import.meta.url), 'utf8')) as {
        version: string;
      };
      expect(await rpc(identityClient, 'GetPluginInfo')).toEqual({
        name: 'csi.spire.io',
        vendor_version: pkg.version,
        manifest: {},
      });
    });

    it('GetPluginCapabilities is empty for a node-only driver', async () => {
      expect(await rpc(identityClient, 'GetPluginCapabilities')).toEqual({ capabilities: [] });
    });

    it('Probe reports readiness from isReady()', async () => {
      expect(await rpc(identityClient, 'Probe')).toEqual({ ready: { value: true } });
      ready = false;
      expect(await rpc(identityClient, 'Probe')).toEqual({ ready: { value: false } });
    });

    it('Probe fails when the readiness check throws', async () => {
      readyError = new Error('probe exploded');
      const err = await rpcError(identityClient, 'Probe');
      expect(err.code).toBe(status.INTERNAL);
      expect(err.details).not.toContain('exploded');
    });
  });

  describe('Node', () => {
    it('NodeGetInfo returns the node id', async () => {
      expect(await rpc(nodeClient, 'NodeGetInfo')).toEqual({
        node_id: 'node-7',
        max_volumes_per_node: '0',
        accessible_topology: null,
      });
    });

    it('NodeGetCapabilities advertises VOLUME_MOUNT_GROUP only', async () => {
      expect(await rpc(nodeClient, 'NodeGetCapabilities')).toEqual({
        capabilities: [{ rpc: { type: 'VOLUME_MOUNT_GROUP' }, type: 'rpc' }],
      });
    });

    it.each(['NodeStageVolume', 'NodeUnstageVolume', 'NodeGetVolumeStats', 'NodeExpandVolume'])(
      '%s is UNIMPLEMENTED',
      async (method) => {
        const err = await rpcError(nodeClient, method, { volume_id: 'v' });
        expect(err.code).toBe(status.UNIMPLEMENTED);
        expect(err.details).toContain(`${method} is not implemented`);
      },
    );

    it.each(['CreateVolume', 'ControllerGetCapabilities', 'ControllerPublishVolume'])(
      'Controller %s is UNIMPLEMENTED (service not registered)',
      async (method) => {
        expect((await rpcError(controllerClient, method)).code).toBe(status.UNIMPLEMENTED);
      },
    );

    it('NodePublishVolume validates and forwards the spec to the publisher', async () => {
      expect(await rpc(nodeClient, 'NodePublishVolume', publishRequest())).toEqual({});
      expect(publisher.published).toHaveLength(1);
      const [{ spec, signal }] = publisher.published as [{ spec: VolumeSpec; signal: AbortSignal | undefined }];
      expect(spec).toEqual({
        volumeId: 'csi-abc',
        targetPath,
        pod: { name: 'web-0', namespace: 'shop', uid: UID, serviceAccount: 'web' },
        files: { svid: 'tls.crt', key: 'svid_key.pem', bundle: 'bundle.pem' },
        bundleIncludeFederated: false,
        fsGroup: 1234,
        spiffeId: null,
        jwtAudiences: [],
        jwtSvidFile: 'jwt-svid.token',
        ...DEFAULT_LAYOUT_OPTIONS,
      });
      expect(signal).toBeInstanceOf(AbortSignal);
      expect(signal?.aborted).toBe(false);
    });

    it('logs one line per call without secrets, tokens or mount flags', async () => {
      await rpc(nodeClient, 'NodePublishVolume', publishRequest());
      const entry = logs.find((e) => e.msg === 'NodePublishVolume OK');
      expect(entry?.level).toBe('info');
      expect(entry?.obj).toMatchObject({
        method: 'NodePublishVolume',
        volume_id: 'csi-abc',
        target_path: targetPath,
        pod: 'shop/web-0',
        code: 'OK',
      });
      expect(typeof (entry?.obj as { duration_ms?: unknown }).duration_ms).toBe('number');
      const all = JSON.stringify(logs);
      expect(all).not.toContain('SECRET-VALUE');
      expect(all).not.toContain('SA-TOKEN-VALUE');
      expect(all).not.toContain('nosuid');
    });

    it('passes the publisher a signal that aborts when kubelet cancels the call', async () => {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      publisher.onPublish = () => released;
      const pending = new Promise<ServiceError | null>((resolve) => {
        const call = (nodeClient as unknown as Record<string, UnaryMethod>).NodePublishVolume!.call(
          nodeClient,
          publishRequest(),
          (err) => resolve(err),
        );
        void until(() => publisher.published.length === 1, 'publish to start').then(() => call.cancel());
      });
      expect((await pending)?.code).toBe(status.CANCELLED);
      await until(() => publisher.published[0]?.signal?.aborted === true, 'the signal to abort');
      release();
    });

    it('NodeUnpublishVolume forwards volume id and normalized target path', async () => {
      expect(await rpc(nodeClient, 'NodeUnpublishVolume', { volume_id: 'csi-abc', target_path: `${targetPath}/` })).toEqual({});
      expect(publisher.unpublished).toEqual([['csi-abc', targetPath]]);
      expect(logs.find((e) => e.msg === 'NodeUnpublishVolume OK')?.level).toBe('info');
    });

    it('maps a CsiError from the publisher to its code and message', async () => {
      publisher.onPublish = async () => {
        throw new CsiError(status.DEADLINE_EXCEEDED, 'no SVID for this pod within 30s: is there a registration entry?');
      };
      const err = await rpcError(nodeClient, 'NodePublishVolume', publishRequest());
      expect(err.code).toBe(status.DEADLINE_EXCEEDED);
      expect(err.details).toBe('no SVID for this pod within 30s: is there a registration entry?');
      expect(logs.find((e) => e.msg === 'NodePublishVolume failed')?.level).toBe('warn');
    });

    it('maps any other error to INTERNAL with a fixed message, logging the cause', async () => {
      publisher.onUnpublish = async () => {
        throw new TypeError('cannot read properties of undefined');
      };
      const err = await rpcError(nodeClient, 'NodeUnpublishVolume', { volume_id: 'csi-abc', target_path: targetPath });
      expect(err.code).toBe(status.INTERNAL);
      expect(err.details).toBe('NodeUnpublishVolume failed inside the driver; see the driver logs');
      const entry = logs.find((e) => e.msg === 'NodeUnpublishVolume failed');
      expect(entry?.level).toBe('error');
      expect(entry?.obj).toMatchObject({ code: 'INTERNAL', error: 'TypeError: cannot read properties of undefined' });
    });

    const invalid: [string, (req: NodePublishVolumeRequest) => void, string][] = [
      ['no volume_id', (r) => { r.volume_id = ''; }, 'volume_id'],
      ['no target_path', (r) => { r.target_path = ''; }, 'target_path'],
      ['no volume_capability', (r) => { delete r.volume_capability; }, 'volume_capability'],
      ['a block capability', (r) => { r.volume_capability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }; }, 'volume_capability.block'],
      ['a multi-node writer', (r) => { r.volume_capability!.access_mode = { mode: 'MULTI_NODE_MULTI_WRITER' }; }, 'volume_capability.access_mode'],
      ['readonly false', (r) => { r.readonly = false; }, 'readOnly: true'],
      ['a persistent volume', (r) => { r.volume_context!['csi.storage.k8s.io/ephemeral'] = 'false'; }, 'csi.storage.k8s.io/ephemeral'],
      ['no pod info', (r) => { r.volume_context = { 'csi.spire.io/svid-file': 'x' }; }, 'podInfoOnMount'],
      ['a target outside the kubelet root', (r) => { r.target_path = `/tmp/pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount`; }, '--kubelet-root'],
      ['a ".." in the target path', (r) => { r.target_path = `${kubeletRoot}/pods/${UID}/volumes/kubernetes.io~csi/../x/y/mount`; }, '".."'],
      ['another pod UID', (r) => { r.volume_context!['csi.storage.k8s.io/pod.uid'] = 'someone-else'; }, 'csi.storage.k8s.io/pod.uid'],
      ['an unknown attribute', (r) => { r.volume_context!['csi.spire.io/svidfile'] = 'x'; }, 'csi.spire.io/svidfile'],
      ['a bad file name', (r) => { r.volume_context!['csi.spire.io/key-file'] = '../key'; }, 'csi.spire.io/key-file'],
      ['a reserved file name', (r) => { r.volume_context!['csi.spire.io/bundle-file'] = 'identity.json'; }, 'csi.spire.io/bundle-file'],
      ['duplicate file names', (r) => { r.volume_context!['csi.spire.io/key-file'] = 'tls.crt'; }, 'csi.spire.io/key-file'],
      ['a bad bundle-include-federated', (r) => { r.volume_context!['csi.spire.io/bundle-include-federated'] = '1'; }, 'csi.spire.io/bundle-include-federated'],
      ['a bad fs-group', (r) => { r.volume_context!['csi.spire.io/fs-group'] = '-5'; }, 'csi.spire.io/fs-group'],
      ['a bad volume_mount_group', (r) => { r.volume_capability!.mount!.volume_mount_group = 'wheel'; }, 'volume_mount_group'],
      ['a bad spiffe-id', (r) => { r.volume_context!['csi.spire.io/spiffe-id'] = 'spiffe://bad/../x'; }, 'csi.spire.io/spiffe-id'],
      ['bad jwt-audiences', (r) => { r.volume_context!['csi.spire.io/jwt-audiences'] = 'a,,b'; }, 'csi.spire.io/jwt-audiences'],
    ];

    it.each(invalid)('NodePublishVolume with %s is INVALID_ARGUMENT and never reaches the publisher', async (_name, mutate, field) => {
      const req = publishRequest();
      mutate(req);
      const err = await rpcError(nodeClient, 'NodePublishVolume', req);
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toContain(field);
      expect(err.details).not.toContain('SECRET-VALUE');
      expect(publisher.published).toHaveLength(0);
    });

    it.each([
      ['no volume_id', { volume_id: '', target_path: 'x' }, 'volume_id'],
      ['a path outside the kubelet root', { volume_id: 'v', target_path: '/etc/kubernetes.io~csi/mount' }, 'target_path'],
    ])('NodeUnpublishVolume with %s is INVALID_ARGUMENT', async (_name, req, field) => {
      const err = await rpcError(nodeClient, 'NodeUnpublishVolume', req);
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toContain(field);
      expect(publisher.unpublished).toHaveLength(0);
    });
  });

  describe('symlinks on disk', () => {
    const otherUid = '11111111-2222-3333-4444-555555555555';
    let outside: string;
    beforeAll(async () => {
      outside = join(dir, 'outside');
      await mkdir(outside, { recursive: true });
    });
    afterEach(async () => {
      await rm(join(kubeletRoot, 'pods', otherUid), { recursive: true, force: true });
    });

    function requestFor(path: string): NodePublishVolumeRequest {
      const req = publishRequest();
      req.target_path = path;
      req.volume_context!['csi.storage.k8s.io/pod.uid'] = otherUid;
      return req;
    }

    it('rejects a mount entry that is a symlink, for publish and unpublish', async () => {
      const volumeDir = join(kubeletRoot, 'pods', otherUid, 'volumes', 'kubernetes.io~csi', 'v');
      await mkdir(volumeDir, { recursive: true });
      await symlink(outside, join(volumeDir, 'mount'));
      const publishErr = await rpcError(nodeClient, 'NodePublishVolume', requestFor(join(volumeDir, 'mount')));
      expect(publishErr.code).toBe(status.INVALID_ARGUMENT);
      expect(publishErr.details).toContain('is a symbolic link');
      const unpublishErr = await rpcError(nodeClient, 'NodeUnpublishVolume', {
        volume_id: 'v',
        target_path: join(volumeDir, 'mount'),
      });
      expect(unpublishErr.code).toBe(status.INVALID_ARGUMENT);
      expect(publisher.published).toHaveLength(0);
      expect(publisher.unpublished).toHaveLength(0);
    });

    it('rejects a parent folder that resolves outside the kubelet root', async () => {
      const pluginDir = join(kubeletRoot, 'pods', otherUid, 'volumes', 'kubernetes.io~csi');
      await mkdir(pluginDir, { recursive: true });
      await symlink(outside, join(pluginDir, 'v'));
      const err = await rpcError(nodeClient, 'NodePublishVolume', requestFor(join(pluginDir, 'v', 'mount')));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toContain('resolves outside the kubelet root');
      expect(publisher.published).toHaveLength(0);
    });

    it('rejects a mount entry that is a file', async () => {
      const volumeDir = join(kubeletRoot, 'pods', otherUid, 'volumes', 'kubernetes.io~csi', 'v');
      await mkdir(volumeDir, { recursive: true });
      await writeFile(join(volumeDir, 'mount'), '');
      const err = await rpcError(nodeClient, 'NodePublishVolume', requestFor(join(volumeDir, 'mount')));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toContain('not a directory');
    });

    it('accepts a target whose parent kubelet has not created yet, and an existing mount directory', async () => {
      const missing = join(kubeletRoot, 'pods', otherUid, 'volumes', 'kubernetes.io~csi', 'v', 'mount');
      expect(await rpc(nodeClient, 'NodePublishVolume', requestFor(missing))).toEqual({});
      await mkdir(missing, { recursive: true });
      expect(await rpc(nodeClient, 'NodePublishVolume', requestFor(missing))).toEqual({});
      expect(publisher.published).toHaveLength(2);
    });
  });
});

describe('CSI server lifecycle', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'csi-life-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const services = () => ({
    identity: new IdentityService({ name: 'x.example.org', vendorVersion: '9.9.9', isReady: () => true }),
    node: new NodeService({ nodeId: 'n', kubeletRoot: dir, publisher: new FakePublisher() }),
    protos,
  });

  it('parses endpoints', () => {
    expect(parseCsiEndpoint('unix:///run/csi/csi.sock')).toBe('/run/csi/csi.sock');
    expect(parseCsiEndpoint('/run/csi/csi.sock')).toBe('/run/csi/csi.sock');
    for (const bad of ['unix://run/csi.sock', 'unix:/run/csi.sock', 'tcp://127.0.0.1:10000', 'csi.sock', '', 'unix://']) {
      expect(() => parseCsiEndpoint(bad)).toThrow(/^csi: endpoint .* is not a unix socket; use unix:\/\/\/absolute\/path\/csi.sock$/);
    }
  });

  it('replaces a stale socket left by a crashed run, creating the folder, and removes it on stop', async () => {
    const socketPath = join(dir, 'a', 'b', 'csi.sock');
    await mkdir(join(dir, 'a', 'b'), { recursive: true });
    // A process that exits without closing leaves its socket file behind.
    const child = spawnSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.exit(0))`,
    ]);
    expect(child.status).toBe(0);
    expect((await lstat(socketPath)).isSocket()).toBe(true);

    const server = await startCsiServer({ endpoint: `unix://${socketPath}`, ...services() });
    const client = new protos.csi.Identity(`unix://${socketPath}`, credentials.createInsecure());
    try {
      expect(await rpc(client, 'GetPluginInfo')).toEqual({ name: 'x.example.org', vendor_version: '9.9.9', manifest: {} });
    } finally {
      client.close();
      await server.stop();
    }
    await expect(lstat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await server.stop(); // idempotent
  });

  it('creates a missing socket folder', async () => {
    const socketPath = join(dir, 'new', 'csi.sock');
    const server = await startCsiServer({ endpoint: socketPath, ...services() });
    try {
      expect((await lstat(socketPath)).isSocket()).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it('refuses to remove something that is not a socket', async () => {
    const socketPath = join(dir, 'csi.sock');
    await writeFile(socketPath, 'precious');
    await expect(startCsiServer({ endpoint: `unix://${socketPath}`, ...services() })).rejects.toThrow(
      /exists and is not a socket; refusing to remove it/,
    );
    expect(await readFile(socketPath, 'utf8')).toBe('precious');
  });

  it('refuses to take over a socket another process is serving', async () => {
    const socketPath = join(dir, 'csi.sock');
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(socketPath, resolve));
    try {
      await expect(startCsiServer({ endpoint: `unix://${socketPath}`, ...services() })).rejects.toThrow(
        /another process is already serving/,
      );
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('stop() cuts off calls still running after the grace period', async () => {
    const socketPath = join(dir, 'csi.sock');
    const publisher = new FakePublisher();
    publisher.onPublish = () => new Promise(() => {}); // never settles
    const volumeDir = join(dir, 'pods', UID, 'volumes', 'kubernetes.io~csi', 'v');
    await mkdir(volumeDir, { recursive: true });
    const server = await startCsiServer({
      endpoint: socketPath,
      identity: new IdentityService({ isReady: () => true }),
      node: new NodeService({ nodeId: 'n', kubeletRoot: dir, publisher }),
      protos,
      shutdownGraceMs: 50,
    });
    const client = new protos.csi.Node(`unix://${socketPath}`, credentials.createInsecure());
    try {
      const request: NodePublishVolumeRequest = {
        volume_id: 'v',
        target_path: join(volumeDir, 'mount'),
        volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
        readonly: true,
        volume_context: {
          'csi.storage.k8s.io/ephemeral': 'true',
          'csi.storage.k8s.io/pod.name': 'p',
          'csi.storage.k8s.io/pod.namespace': 'n',
          'csi.storage.k8s.io/pod.uid': UID,
          'csi.storage.k8s.io/serviceAccount.name': 'sa',
        },
      };
      const pending = rpcError(client, 'NodePublishVolume', request);
      await until(() => publisher.published.length === 1, 'publish to start');
      await server.stop();
      // grpc-js reports a force-closed call as CANCELLED or UNAVAILABLE depending on timing.
      expect([status.CANCELLED, status.UNAVAILABLE]).toContain((await pending).code);
    } finally {
      client.close();
    }
  });
});
