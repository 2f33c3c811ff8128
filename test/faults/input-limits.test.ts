/**
 * Regression tests for what the fuzz found in the CSI layer (fixed in driver/src/csi): huge values
 * echoed into a status message made the reply undeliverable (the caller hung), over-long paths
 * reached syscalls, and a symlink below `<kubelet root>/pods` let a request act on another pod's
 * volume. No mounts: these run as any user.
 */
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CsiError } from '../../driver/src/csi/errors.js';
import { IdentityService } from '../../driver/src/csi/identity-service.js';
import { NodeService } from '../../driver/src/csi/node-service.js';
import { boundDetails, MAX_STATUS_DETAILS_CHARS, startCsiServer, type CsiServer } from '../../driver/src/csi/server.js';
import { checkTargetPathOnDisk, TargetPathError } from '../../driver/src/target-path/target-path.js';
import { validatePublishRequest, validateUnpublishRequest } from '../../driver/src/csi/validation.js';
import type { VolumePublisher } from '../../driver/src/manager/volume-publisher.js';
import { loadProtos } from '../../driver/src/proto/load.js';
import type { NodePublishVolumeRequest } from '../../driver/src/proto/csi-messages.js';

const ROOT = '/var/lib/kubelet';
const UID = '0d7c6f3e-8a4b-4c61-9d0e-5b7a2c1f9e88';
const TARGET = `${ROOT}/pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount`;

function request(overrides: Partial<NodePublishVolumeRequest> = {}): NodePublishVolumeRequest {
  return {
    volume_id: 'csi-0123',
    target_path: TARGET,
    volume_capability: { mount: { fs_type: '', mount_flags: [], volume_mount_group: '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
    readonly: true,
    volume_context: {
      'csi.storage.k8s.io/pod.name': 'web',
      'csi.storage.k8s.io/pod.namespace': 'default',
      'csi.storage.k8s.io/pod.uid': UID,
      'csi.storage.k8s.io/serviceAccount.name': 'web',
      'csi.storage.k8s.io/ephemeral': 'true',
    },
    ...overrides,
  };
}

function rejection(fn: () => unknown): CsiError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CsiError);
    return err as CsiError;
  }
  throw new Error('expected a rejection');
}

describe('CSI input limits', () => {
  it('rejects an over-long target path with INVALID_ARGUMENT and a short message', () => {
    for (const path of [`/${'x'.repeat(1_000_000)}`, `${ROOT}/pods/${'u'.repeat(5000)}/volumes/kubernetes.io~csi/v/mount`]) {
      const err = rejection(() => validateUnpublishRequest({ volume_id: 'v', target_path: path }, { kubeletRoot: ROOT }));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.message.length).toBeLessThan(1_000);
    }
  });

  it('rejects a target path segment over NAME_MAX', () => {
    const path = `${ROOT}/pods/${UID}/volumes/kubernetes.io~csi/${'n'.repeat(256)}/mount`;
    const err = rejection(() => validateUnpublishRequest({ volume_id: 'v', target_path: path }, { kubeletRoot: ROOT }));
    expect(err.message).toMatch(/255 bytes/);
  });

  it('accepts volume_id up to the 128 bytes CSI allows, and rejects longer ones', () => {
    expect(validatePublishRequest(request({ volume_id: 'v'.repeat(128) }), { kubeletRoot: ROOT }).volumeId).toHaveLength(128);
    const err = rejection(() => validatePublishRequest(request({ volume_id: 'v'.repeat(129) }), { kubeletRoot: ROOT }));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.message).toMatch(/128 bytes/);
  });

  it('quotes at most a few hundred characters of a huge value', () => {
    const err = rejection(() => validatePublishRequest(request({ volume_context: { ...request().volume_context, 'csi.spire.io/fs-group': 'g'.repeat(100_000) } }), { kubeletRoot: ROOT }));
    expect(err.message).toMatch(/100000 characters/);
    expect(err.message.length).toBeLessThan(1_000);
  });

  it('bounds any status message the server sends', () => {
    expect(boundDetails('short')).toBe('short');
    const bounded = boundDetails('m'.repeat(1_000_000));
    expect(bounded.length).toBeLessThan(MAX_STATUS_DETAILS_CHARS + 100);
    expect(bounded).toMatch(/truncated from 1000000 characters/);
  });
});

describe('CSI server replies to huge requests instead of hanging', () => {
  let dir: string;
  let server: CsiServer;
  let client: Client & Record<string, (req: object, opts: object, cb: (err: ServiceError | null) => void) => void>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'csi-limits-'));
    const publisher: VolumePublisher = {
      publish: async (spec) => {
        // A publisher failing with a message that embeds the (huge) request values.
        throw CsiError.invalidArgument(`cannot publish ${spec.pod.name}`);
      },
      unpublish: async () => {},
    };
    server = await startCsiServer({
      endpoint: `unix://${join(dir, 'csi.sock')}`,
      identity: new IdentityService({ isReady: () => true }),
      node: new NodeService({ nodeId: 'n', kubeletRoot: join(dir, 'kubelet'), publisher }),
    });
    client = new (loadProtos().csi.Node)(`unix:${join(dir, 'csi.sock')}`, credentials.createInsecure()) as typeof client;
  });

  afterEach(async () => {
    client.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const call = (method: string, req: object): Promise<ServiceError | null> =>
    new Promise((resolve) => client[method]!.call(client, req, { deadline: Date.now() + 10_000 }, (err) => resolve(err)));

  it('answers a megabyte-long target_path with INVALID_ARGUMENT', async () => {
    const err = await call('NodeUnpublishVolume', { volume_id: 'v', target_path: 'x'.repeat(1_000_000) });
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('answers a publish whose error message embeds a megabyte-long pod name', async () => {
    const kubeletRoot = join(dir, 'kubelet');
    const target = `${kubeletRoot}/pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount`;
    await mkdir(join(target, '..'), { recursive: true });
    const req = request({ target_path: target });
    req.volume_context!['csi.storage.k8s.io/pod.name'] = 'p'.repeat(1_000_000);
    const err = await call('NodePublishVolume', req);
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.details.length).toBeLessThan(MAX_STATUS_DETAILS_CHARS + 100);
  });
});

describe('symlinks below the pods folder', () => {
  let dir: string;
  let kubeletRoot: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'csi-links-'));
    kubeletRoot = join(dir, 'kubelet');
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const volumeDir = (uid: string, name = 'spiffe'): string => join(kubeletRoot, 'pods', uid, 'volumes', 'kubernetes.io~csi', name);

  it.each([
    ['the pod folder', async () => symlink(join(kubeletRoot, 'pods', 'victim'), join(kubeletRoot, 'pods', 'attacker'))],
    ['the volume folder', async () => {
      await mkdir(join(volumeDir('attacker'), '..'), { recursive: true });
      await symlink(volumeDir('victim'), volumeDir('attacker'));
    }],
  ])('refuses a target reaching another pod through a symlinked %s', async (_what, link) => {
    await mkdir(join(volumeDir('victim'), 'mount'), { recursive: true });
    await link();
    const err = await checkTargetPathOnDisk(join(volumeDir('attacker'), 'mount'), kubeletRoot).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TargetPathError);
    expect((err as TargetPathError).kind).toBe('invalid');
    expect((err as TargetPathError).message).toMatch(/symbolic link/);
  });

  it('still accepts a kubelet root that is itself a symlink, and real directories below it', async () => {
    await mkdir(join(volumeDir('pod'), 'mount'), { recursive: true });
    const linkedRoot = join(dir, 'linked-kubelet');
    await symlink(kubeletRoot, linkedRoot);
    await checkTargetPathOnDisk(join(linkedRoot, 'pods', 'pod', 'volumes', 'kubernetes.io~csi', 'spiffe', 'mount'), linkedRoot);
    await checkTargetPathOnDisk(join(volumeDir('pod'), 'mount'), kubeletRoot);
    await checkTargetPathOnDisk(join(volumeDir('new-pod'), 'mount'), kubeletRoot);
  });
});
