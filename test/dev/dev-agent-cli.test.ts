import { EventEmitter } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { authorizeId } from '@spire-csi/sdk/authorize';
import { spiffeChannelCredentials } from '@spire-csi/sdk/grpc';
import { StaticSource } from '@spire-csi/sdk/source';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { ConfigError } from '../../driver/src/config/options.js';
import { devAgentHelp, parseDevAgentArgs, runDevAgent } from '../../dev/src/dev-agent/main.js';
import { waitFor } from '../helpers/wait-for.js';
import { k8s, rawClient, record } from '../helpers/agent-harness.js';
import {
  AGENT_ID,
  brokerMetadata,
  DRIVER_ID,
  podReference,
  rawBrokerClient,
  rawWorkloadClient,
  workloadMetadata,
  type RawBrokerClient,
} from '../helpers/broker-harness.js';

const POD_A = { namespace: 'a', name: 'a-0', uid: '0d4f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b', serviceAccount: 'default' };

const base = ['--socket', '/run/dev/admin.sock', '--trust-domain', 'example.org', '--registrations', '/etc/regs.json'];

describe('dev-agent command line', () => {
  it('parses flags with defaults', () => {
    expect(parseDevAgentArgs(base, {})).toEqual({
      socketPath: '/run/dev/admin.sock',
      trustDomain: 'example.org',
      registrationsFile: '/etc/regs.json',
      svidTtlMs: 3_600_000,
      jwtSvidTtlMs: 300_000,
      logLevel: 'info',
      brokerAuthz: 'call',
      errorInfo: true,
    });
    expect(parseDevAgentArgs([...base, '--svid-ttl', '5m', '--trust-domain', 'spiffe://other.org'], {})).toMatchObject({
      svidTtlMs: 300_000,
      trustDomain: 'other.org',
    });
    expect(parseDevAgentArgs(['--help'], {})).toBeNull();
    expect(devAgentHelp()).toMatch(/DEVELOPMENT ONLY/);
  });

  it('parses the Workload API and Broker endpoint flags', () => {
    const argv = [
      ...base,
      '--workload-socket', '/run/dev/api.sock',
      '--workload-id', 'spiffe://example.org/ns/csi/sa/driver',
      '--broker-socket', '/run/dev/broker.sock',
      '--broker-server-id', 'spiffe://example.org/spire/agent/k8s_psat/node-1',
      '--brokers', 'spiffe://example.org/ns/csi/sa/driver, spiffe://other.org/broker',
      '--broker-authz', 'handshake',
      '--pods', '/etc/pods.json',
      '--broker-error-info', 'false',
      '--node-name', 'node-1',
    ];
    expect(parseDevAgentArgs(argv, {})).toMatchObject({
      workloadSocketPath: '/run/dev/api.sock',
      workloadId: 'spiffe://example.org/ns/csi/sa/driver',
      brokerSocketPath: '/run/dev/broker.sock',
      brokerServerId: 'spiffe://example.org/spire/agent/k8s_psat/node-1',
      brokers: ['spiffe://example.org/ns/csi/sa/driver', 'spiffe://other.org/broker'],
      brokerAuthz: 'handshake',
      podsFile: '/etc/pods.json',
      errorInfo: false,
      nodeName: 'node-1',
    });
    // Each has an environment variable too; the flag wins.
    const env = { SPIRE_CSI_DEV_AGENT_BROKER_SOCKET: '/env/broker.sock', SPIRE_CSI_DEV_AGENT_BROKER_AUTHZ: 'handshake' };
    expect(parseDevAgentArgs(base, env)).toMatchObject({ brokerSocketPath: '/env/broker.sock', brokerAuthz: 'handshake' });
    expect(devAgentHelp()).toMatch(/--broker-socket/);
    expect(devAgentHelp()).toMatch(/--pods/);
    expect(devAgentHelp()).toMatch(/--broker-authz <value> +where a client not in --brokers is refused/);
  });

  it.each([
    [['--socket', 'rel.sock', '--trust-domain', 'example.org', '--registrations', 'r.json'], /--socket must be an absolute path/],
    [[...base, '--trust-domain', 'Example.org'], /--trust-domain: /],
    [[...base, '--svid-ttl', 'soon'], /--svid-ttl/],
    [[...base, '--svid-ttl', '500ms'], /at least 1s/],
    [['--socket', '/a.sock', '--trust-domain', 'example.org'], /--registrations/],
    [[...base, '--workload-socket', 'api.sock'], /--workload-socket must be an absolute path, got "api.sock"/],
    [[...base, '--broker-socket', 'b.sock'], /--broker-socket must be an absolute path/],
    [[...base, '--workload-id', 'spiffe://other.org/driver'], /--workload-id "spiffe:\/\/other.org\/driver" must be in --trust-domain "example.org"/],
    [[...base, '--workload-id', 'not-an-id'], /--workload-id: /],
    [[...base, '--broker-socket', '/b.sock', '--broker-server-id', 'spiffe://other.org/agent'], /--broker-server-id .* must be in --trust-domain/],
    [[...base, '--broker-socket', '/b.sock', '--brokers', 'spiffe://example.org/a,,spiffe://example.org/b'], /--brokers item 2 is empty/],
    [[...base, '--broker-socket', '/b.sock', '--brokers', 'spiffe://example.org/a,https://x'], /--brokers item 2: /],
    [[...base, '--broker-socket', '/b.sock', '--broker-authz', 'tls'], /--broker-authz must be "call" or "handshake", got "tls"/],
    [[...base, '--broker-socket', '/b.sock', '--broker-error-info', 'yes'], /--broker-error-info must be "true" or "false", got "yes"/],
    [[...base, '--pods', '/etc/pods.json'], /--pods configures the broker endpoint; add --broker-socket PATH to serve it/],
    [[...base, '--brokers', 'spiffe://example.org/a'], /--brokers configures the broker endpoint/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseDevAgentArgs(argv, {})).toThrow(message);
  });
});

describe('runDevAgent', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = '';
  });

  const quiet = { debug() {}, info() {}, warn() {}, error() {} };

  it('serves until SIGTERM and reloads registrations on SIGHUP', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spire-csi-devcli-'));
    const socket = join(dir, 'admin.sock');
    const file = join(dir, 'regs.json');
    await writeFile(file, JSON.stringify({ entries: [] }));
    const signals = new EventEmitter();
    const running = runDevAgent(['--socket', socket, '--trust-domain', 'example.org', '--registrations', file], {}, {
      signals,
      stdout: () => {},
      logger: quiet,
    });
    const client = rawClient(socket);
    try {
      const svids = await waitFor(
        async () => {
          const r = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:a') }));
          await waitFor(() => r.messages.length > 0 || r.status !== null);
          return r.messages.length > 0 ? r : null;
        },
        { message: 'the agent to serve', intervalMs: 100 },
      );
      expect(svids.messages[0]!.x509_svids).toEqual([]);
      await writeFile(file, JSON.stringify({ entries: [{ spiffeId: 'spiffe://example.org/a', selectors: ['k8s:ns:a'] }] }));
      signals.emit('SIGHUP');
      await waitFor(() => svids.messages.length > 1, { message: 'update after SIGHUP' });
      expect(svids.messages[1]!.x509_svids).toHaveLength(1);
      signals.emit('SIGTERM');
      await expect(running).resolves.toBe(0);
      await waitFor(() => svids.status, { message: 'stream ended by stop' });
    } finally {
      client.close();
      signals.emit('SIGTERM');
    }
  });

  it('fails with a ConfigError naming the file when registrations are invalid', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spire-csi-devcli-'));
    const file = join(dir, 'regs.json');
    await writeFile(file, '{"entries": [{"spiffeId": "spiffe://example.org/a", "selectors": []}]}');
    const argv = ['--socket', join(dir, 'admin.sock'), '--trust-domain', 'example.org', '--registrations', file];
    const io = { signals: new EventEmitter(), stdout: () => {}, logger: quiet };
    await expect(runDevAgent(argv, {}, io)).rejects.toThrow(ConfigError);
    await expect(runDevAgent(argv, {}, io)).rejects.toThrow(/regs\.json: registrations: entries\[0\]\.selectors/);
    const missing = ['--socket', join(dir, 'admin.sock'), '--trust-domain', 'example.org', '--registrations', join(dir, 'nope.json')];
    await expect(runDevAgent(missing, {}, io)).rejects.toThrow(/cannot read/);
  });

  it('serves the Workload API and the Broker endpoint, following the pods file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spire-csi-devcli-'));
    const file = join(dir, 'regs.json');
    const podsFile = join(dir, 'pods.json');
    await writeFile(file, JSON.stringify({ entries: [{ spiffeId: 'spiffe://example.org/a', selectors: ['k8s:ns:a'] }] }));
    await writeFile(podsFile, JSON.stringify([POD_A]));
    const sockets = { admin: join(dir, 'admin.sock'), api: join(dir, 'api.sock'), broker: join(dir, 'broker.sock') };
    const signals = new EventEmitter();
    const argv = ['--socket', sockets.admin, '--trust-domain', 'example.org', '--registrations', file];
    const running = runDevAgent(
      [...argv, '--workload-socket', sockets.api, '--broker-socket', sockets.broker, '--pods', podsFile, '--broker-error-info', 'false'],
      {},
      { signals, stdout: () => {}, logger: quiet },
    );
    const workload = rawWorkloadClient(sockets.api);
    let broker: RawBrokerClient | undefined;
    try {
      // The Workload API serves the driver's SVID; with it the driver is a broker (the default list).
      const own = await waitFor(
        async () => {
          const r = record(workload.FetchX509SVID({}, workloadMetadata()));
          await waitFor(() => r.messages.length > 0 || r.status !== null);
          return r.messages.length > 0 ? r : null;
        },
        { message: 'the Workload API to serve', intervalMs: 100 },
      );
      const wire = own.messages[0]!.svids[0]!;
      expect(wire.spiffe_id).toBe(DRIVER_ID);
      const bundles = new X509BundleSet([X509Bundle.fromDer('example.org', wire.bundle)]);
      const source = new StaticSource({ svid: X509Svid.fromDer(wire.x509_svid, wire.x509_svid_key), bundles });
      broker = rawBrokerClient(sockets.broker, spiffeChannelCredentials(source, { authorize: authorizeId(AGENT_ID) }));
      const stream = record(broker.SubscribeToX509SVID({ reference: podReference(POD_A) }, brokerMetadata()));
      await waitFor(() => stream.messages.length > 0 || stream.status !== null, { message: 'the broker stream' });
      expect(stream.messages[0]!.svids.map((s) => s.spiffe_id)).toEqual(['spiffe://example.org/a']);

      // --broker-error-info false: a NotFound carries no details trailer.
      const unknown = record(broker.SubscribeToX509SVID({ reference: podReference({ uid: 'nope' }) }, brokerMetadata()));
      const notFound = await waitFor(() => unknown.status, { message: 'NotFound' });
      expect(notFound.code).toBe(status.NOT_FOUND);
      expect(notFound.metadata.get('grpc-status-details-bin')).toEqual([]);

      // The pod leaves the file: its stream ends.
      const tmp = `${podsFile}.tmp`;
      await writeFile(tmp, '[]');
      await rename(tmp, podsFile);
      const ended = await waitFor(() => stream.status, { message: 'stream end after the pod left' });
      expect(ended.code).toBe(status.OK);

      signals.emit('SIGTERM');
      await expect(running).resolves.toBe(0);
    } finally {
      workload.close();
      broker?.close();
      signals.emit('SIGTERM');
    }
  });

  it('fails with a ConfigError naming the pods file when it is malformed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spire-csi-devcli-'));
    const file = join(dir, 'regs.json');
    const podsFile = join(dir, 'pods.json');
    await writeFile(file, JSON.stringify({ entries: [] }));
    await writeFile(podsFile, '{"pods": []}');
    const argv = ['--socket', join(dir, 'admin.sock'), '--trust-domain', 'example.org', '--registrations', file];
    const io = { signals: new EventEmitter(), stdout: () => {}, logger: quiet };
    const run = runDevAgent([...argv, '--broker-socket', join(dir, 'broker.sock'), '--pods', podsFile], {}, io);
    await expect(run).rejects.toThrow(ConfigError);
    await expect(runDevAgent([...argv, '--broker-socket', join(dir, 'broker.sock'), '--pods', podsFile], {}, io)).rejects.toThrow(
      /pods\.json: pods: the file must be a JSON array of \{namespace, name, uid, serviceAccount\} objects/,
    );
  });

  it('prints help', async () => {
    let out = '';
    const code = await runDevAgent(['--help'], {}, { signals: new EventEmitter(), stdout: (t) => (out += t) });
    expect(code).toBe(0);
    expect(out).toMatch(/--trust-domain/);
  });
});
