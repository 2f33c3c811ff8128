import { FakeClock } from '../helpers/fake-clock.js';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CsiError } from '../../driver/src/csi/errors.js';
import type { CsiNode } from '../../driver/src/csi/node-service.js';
import { bindMetrics } from '../../driver/src/metrics/bind-metrics.js';
import { DriverMetrics } from '../../driver/src/metrics/driver-metrics.js';
import {
  MetricsServerError,
  parseListenAddress,
  startMetricsServer,
  type MetricsServer,
  type Readiness,
} from '../../driver/src/metrics/http-server.js';
import { instrumentNode } from '../../driver/src/metrics/instrumented-node.js';
import { driverReadiness } from '../../driver/src/metrics/readiness.js';
import type { NodePublishVolumeRequest, NodeUnpublishVolumeRequest } from '../../driver/src/proto/csi-messages.js';
import { VolumeEvents } from '../../driver/src/volume/volume-events.js';

const NOW = new Date('2030-01-01T00:00:00Z');
const ADMIN_SOCKET = '/run/spire/admin.sock';

/** The value of one exact series (`name{labels}`) in a text-format scrape, or undefined if absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

class FakeAgent extends EventEmitter<{ state: [boolean] }> {}

interface FakeVolumes {
  volumeCount: number;
  expiry: Date | undefined;
  earliestExpiry(): Date | undefined;
}

describe('driver metrics over HTTP', () => {
  let volumes: FakeVolumes;
  let events: VolumeEvents;
  let agent: FakeAgent;
  let metrics: DriverMetrics;
  let unbind: () => void;
  let server: MetricsServer;
  let readiness: Readiness;
  let base: string;

  const scrape = async (): Promise<string> => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  };

  beforeEach(async () => {
    volumes = {
      volumeCount: 0,
      expiry: undefined,
      earliestExpiry() {
        return this.expiry;
      },
    };
    events = new VolumeEvents();
    agent = new FakeAgent();
    metrics = new DriverMetrics({ volumes, clock: new FakeClock(NOW) });
    unbind = bindMetrics(metrics, { events, agent });
    readiness = { ready: false, reason: `agent unreachable at ${ADMIN_SOCKET}` };
    server = await startMetricsServer({ address: '127.0.0.1:0', registry: metrics.registry, isReady: () => readiness });
    base = `http://${server.address}`;
  });

  afterEach(async () => {
    unbind();
    await server.close();
  });

  it('binds to 127.0.0.1 on a free port and reports the real address', () => {
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(server.address).not.toBe('127.0.0.1:0');
  });

  it('serves the Prometheus text format with zeroed series, default metrics and no SVID expiry sample', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(metrics.registry.contentType);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(sample(text, 'spire_csi_volumes')).toBe(0);
    expect(sample(text, 'spire_csi_publish_total{result="ok"}')).toBe(0);
    expect(sample(text, 'spire_csi_unpublish_total{result="ok"}')).toBe(0);
    expect(sample(text, 'spire_csi_rotations_total')).toBe(0);
    expect(sample(text, 'spire_csi_errors_total{kind="publish-failed"}')).toBe(0);
    expect(sample(text, 'spire_csi_agent_connected')).toBe(0);
    expect(sample(text, 'spire_csi_publish_duration_seconds_count')).toBe(0);
    expect(text).toContain('# TYPE spire_csi_publish_duration_seconds histogram');
    expect(text).toContain('# TYPE spire_csi_svid_expiry_seconds gauge');
    expect(sample(text, 'spire_csi_svid_expiry_seconds')).toBeUndefined();
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
  });

  it('counts rotations (not first deliveries) and errors by kind, with no volume ids in labels', async () => {
    const notAfter = new Date(NOW.getTime() + 3_600_000);
    events.emit('rotated', { volumeId: 'vol-secret-1', spiffeId: 'spiffe://example.org/a', notAfter, initial: true });
    events.emit('rotated', { volumeId: 'vol-secret-1', spiffeId: 'spiffe://example.org/a', notAfter, initial: false });
    events.emit('rotated', { volumeId: 'vol-secret-2', spiffeId: 'spiffe://example.org/b', notAfter, initial: false });
    events.emitError('write-failed', 'vol-secret-1');
    events.emitError('write-failed', 'vol-secret-2');
    events.emitError('corrupt-record');

    const text = await scrape();
    expect(sample(text, 'spire_csi_rotations_total')).toBe(2);
    expect(sample(text, 'spire_csi_errors_total{kind="write-failed"}')).toBe(2);
    expect(sample(text, 'spire_csi_errors_total{kind="corrupt-record"}')).toBe(1);
    expect(sample(text, 'spire_csi_errors_total{kind="agent-error"}')).toBe(0);
    expect(text).not.toContain('vol-secret');
    expect(text).not.toContain('spiffe://');
  });

  it('reads the volume count and the earliest SVID expiry at scrape time', async () => {
    volumes.volumeCount = 3;
    volumes.expiry = new Date(NOW.getTime() + 90_500);
    let text = await scrape();
    expect(sample(text, 'spire_csi_volumes')).toBe(3);
    expect(sample(text, 'spire_csi_svid_expiry_seconds')).toBe(90.5);

    volumes.expiry = new Date(NOW.getTime() - 2_000);
    text = await scrape();
    expect(sample(text, 'spire_csi_svid_expiry_seconds')).toBe(-2);

    volumes.volumeCount = 0;
    volumes.expiry = undefined;
    text = await scrape();
    expect(sample(text, 'spire_csi_volumes')).toBe(0);
    expect(sample(text, 'spire_csi_svid_expiry_seconds')).toBeUndefined();
  });

  it('follows the agent state events', async () => {
    agent.emit('state', true);
    expect(sample(await scrape(), 'spire_csi_agent_connected')).toBe(1);
    agent.emit('state', false);
    expect(sample(await scrape(), 'spire_csi_agent_connected')).toBe(0);
  });

  it('starts the agent gauge from the current state and stops listening once unbound', async () => {
    const connectedAgent = Object.assign(new FakeAgent(), { connected: true });
    const other = new DriverMetrics({ volumes, defaultMetrics: false });
    const otherEvents = new VolumeEvents();
    const unbindOther = bindMetrics(other, { events: otherEvents, agent: connectedAgent });
    expect((await other.agentConnected.get()).values[0]?.value).toBe(1);
    unbindOther();
    expect(connectedAgent.listenerCount('state')).toBe(0);
    expect(otherEvents.listenerCount('rotated')).toBe(0);
    expect(otherEvents.listenerCount('error')).toBe(0);
    connectedAgent.emit('state', false);
    expect((await other.agentConnected.get()).values[0]?.value).toBe(1);
  });

  it('counts publish and unpublish results from the CSI layer and times every publish', async () => {
    let clock = 0;
    const outcomes: (Error | null)[] = [null, new CsiError(status.DEADLINE_EXCEEDED, 'no SVID'), new Error('boom'), null];
    const fake: CsiNode = {
      getInfo: async () => ({ node_id: 'n', max_volumes_per_node: '0' }),
      getCapabilities: async () => ({ capabilities: [] }),
      publishVolume: async () => {
        const outcome = outcomes.shift();
        clock += outcome === null ? 4 : 30_000;
        if (outcome) throw outcome;
        return {};
      },
      unpublishVolume: async (request) => {
        if (request.volume_id === 'bad') throw CsiError.invalidArgument('volume_id is bad');
        return {};
      },
    };
    const node = instrumentNode(fake, metrics, { now: () => clock });
    const publish = {} as NodePublishVolumeRequest;
    await node.publishVolume(publish);
    await expect(node.publishVolume(publish)).rejects.toThrow('no SVID');
    await expect(node.publishVolume(publish)).rejects.toThrow('boom');
    await node.publishVolume(publish);
    await node.unpublishVolume({ volume_id: 'v1' } as NodeUnpublishVolumeRequest);
    await expect(node.unpublishVolume({ volume_id: 'bad' } as NodeUnpublishVolumeRequest)).rejects.toBeInstanceOf(CsiError);

    const text = await scrape();
    expect(sample(text, 'spire_csi_publish_total{result="ok"}')).toBe(2);
    expect(sample(text, 'spire_csi_publish_total{result="deadline_exceeded"}')).toBe(1);
    expect(sample(text, 'spire_csi_publish_total{result="internal"}')).toBe(1);
    expect(sample(text, 'spire_csi_unpublish_total{result="ok"}')).toBe(1);
    expect(sample(text, 'spire_csi_unpublish_total{result="invalid_argument"}')).toBe(1);
    expect(sample(text, 'spire_csi_publish_duration_seconds_count')).toBe(4);
    expect(sample(text, 'spire_csi_publish_duration_seconds_sum')).toBeCloseTo(60.008, 6);
    expect(sample(text, 'spire_csi_publish_duration_seconds_bucket{le="0.001"}')).toBe(0);
    expect(sample(text, 'spire_csi_publish_duration_seconds_bucket{le="0.005"}')).toBe(2);
    expect(sample(text, 'spire_csi_publish_duration_seconds_bucket{le="20"}')).toBe(2);
    expect(sample(text, 'spire_csi_publish_duration_seconds_bucket{le="30"}')).toBe(4);
    expect(sample(text, 'spire_csi_publish_duration_seconds_bucket{le="+Inf"}')).toBe(4);
  });

  it('answers /healthz with 200 ok', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  it('answers /readyz 503 with the reason, then 200 once ready', async () => {
    let res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await res.text()).toBe(`agent unreachable at ${ADMIN_SOCKET}\n`);

    readiness = { ready: true };
    res = await fetch(`${base}/readyz?verbose`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  it('answers 404 for other paths, 405 for other methods, and HEAD without a body', async () => {
    for (const path of ['/', '/metric', '/metrics/', '/debug/pprof', '/healthz/../metrics%2F']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(await res.text()).toBe('not found\n');
    }
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
    const head = await fetch(`${base}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('reports a readiness check that throws as not ready', async () => {
    const throwing = await startMetricsServer({
      address: '127.0.0.1:0',
      registry: metrics.registry,
      isReady: () => {
        throw new Error('secret detail');
      },
    });
    try {
      const res = await fetch(`http://${throwing.address}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.text()).toBe('readiness check failed\n');
    } finally {
      await throwing.close();
    }
  });

  it('close() is idempotent and stops answering', async () => {
    const extra = await startMetricsServer({ address: '127.0.0.1:0', registry: metrics.registry, isReady: () => readiness });
    expect((await fetch(`http://${extra.address}/healthz`)).status).toBe(200);
    await Promise.all([extra.close(), extra.close()]);
    await expect(fetch(`http://${extra.address}/healthz`)).rejects.toThrow();
  });
});

describe('metrics listen address', () => {
  it('parses host:port, [v6]:port and :port', () => {
    expect(parseListenAddress('0.0.0.0:9809')).toEqual({ host: '0.0.0.0', port: 9809 });
    expect(parseListenAddress('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListenAddress('[::1]:9809')).toEqual({ host: '::1', port: 9809 });
    expect(parseListenAddress(':9809')).toEqual({ host: undefined, port: 9809 });
  });

  it('rejects malformed addresses and ports beyond 65535', () => {
    for (const bad of ['9809', 'host', 'host:', 'host:70000', '::1:9809', 'a b:1', 'host:12345678']) {
      expect(() => parseListenAddress(bad), bad).toThrow(MetricsServerError);
    }
    expect(() => parseListenAddress('host:70000')).toThrow(/^metrics: listen address "host:70000"/);
  });

  it('fails to start with a readable error when the port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    const metrics = new DriverMetrics({ volumes: { volumeCount: 0, earliestExpiry: () => undefined }, defaultMetrics: false });
    try {
      await expect(
        startMetricsServer({ address: `127.0.0.1:${port}`, registry: metrics.registry, isReady: () => ({ ready: true }) }),
      ).rejects.toThrow(new RegExp(`^metrics: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

describe('driver readiness', () => {
  it('needs the CSI socket served and the agent reachable', () => {
    expect(driverReadiness({ csiSocket: null, agentConnected: true, adminSocket: ADMIN_SOCKET })).toEqual({
      ready: false,
      reason: 'CSI socket not served',
    });
    expect(driverReadiness({ csiSocket: '/csi/csi.sock', agentConnected: false, adminSocket: ADMIN_SOCKET })).toEqual({
      ready: false,
      reason: `agent unreachable at ${ADMIN_SOCKET}`,
    });
    expect(driverReadiness({ csiSocket: '/csi/csi.sock', agentConnected: true, adminSocket: ADMIN_SOCKET, resuming: true })).toEqual({
      ready: false,
      reason: 'resuming recorded volumes',
    });
    expect(driverReadiness({ csiSocket: '/csi/csi.sock', agentConnected: true, adminSocket: ADMIN_SOCKET })).toEqual({ ready: true });
  });
});
