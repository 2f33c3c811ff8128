/**
 * WorkloadApiSource against a real Workload API server (grpc-js, the repository's workload.proto,
 * a unix socket) fed by the test CA. Reconnect delays run on a fake clock; everything else is real
 * I/O, awaited through the source's own events.
 */
import { once } from 'node:events';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WorkloadApiError, WorkloadApiSource, type WorkloadApiSourceOptions } from '@spire-csi/sdk/workload-api';
import { createClientTlsOptions, createHttpsServer } from '@spire-csi/sdk/tls';
import { SpiffeDispatcher, fetch } from '@spire-csi/sdk/undici';
import { authorizeId } from '@spire-csi/sdk/authorize';
import { peerSpiffeId } from '@spire-csi/sdk';
import type { X509Material } from '@spire-csi/sdk/source';
import { FakeClock } from '../helpers/fake-clock.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';
import { WorkloadApiTestServer, x509Response, type SvidEntry } from '../helpers/workload-api-server.js';
import { httpsGet, listen } from './tls-harness.js';

const ID = 'spiffe://example.org/ns/default/sa/driver';

let caA: TestCa;
let caB: TestCa;
let first: MintedSvid;
let second: MintedSvid;

beforeAll(async () => {
  caA = await TestCa.create('example.org');
  caB = await TestCa.create('other.org');
  first = await caA.mint(ID);
  second = await caA.mint(ID);
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(): Promise<WorkloadApiTestServer> {
  const s = await WorkloadApiTestServer.start();
  cleanups.push(() => s.close());
  return s;
}

function open(options: WorkloadApiSourceOptions): { source: WorkloadApiSource; clock: FakeClock; errors: WorkloadApiError[] } {
  const clock = new FakeClock(Date.now());
  const source = new WorkloadApiSource({ clock, ...options });
  const errors: WorkloadApiError[] = [];
  source.on('error', (err) => errors.push(err));
  cleanups.push(() => source.close());
  return { source, clock, errors };
}

function entry(minted: MintedSvid, extra: Partial<SvidEntry> = {}): SvidEntry {
  return { minted, spiffeId: ID, bundle: [caA], ...extra };
}

function nextUpdate(source: WorkloadApiSource): Promise<X509Material> {
  return once(source, 'update').then(([material]) => material as X509Material);
}

function nextError(source: WorkloadApiSource): Promise<WorkloadApiError> {
  return once(source, 'error').then(([error]) => error as WorkloadApiError);
}

describe('WorkloadApiSource: messages', () => {
  it('takes the first message: the SVID, its own trust domain bundle, and sends the security header', async () => {
    const api = await server();
    api.send(x509Response([entry(first)]));
    const { source } = open({ endpoint: api.endpoint });
    const states: boolean[] = [];
    source.on('state', (connected) => states.push(connected));

    const material = await source.ready();
    expect(material.svid.id.toString()).toBe(ID);
    expect(material.svid.serialNumber).toBe(first.cert.serialNumber);
    expect(material.bundles.trustDomains().map((td) => td.name)).toEqual(['example.org']);
    expect(material.bundles.get('example.org')!.hasAuthority(caA.rootCert)).toBe(true);
    expect(source.current()).toBe(material);
    expect(source.getX509Svid()).toBe(material.svid);
    expect(source.getX509Bundles()).toBe(material.bundles);
    expect(source.connected).toBe(true);
    expect(states).toEqual([true]);
    expect(api.calls[0]!.get('workload.spiffe.io')).toEqual(['true']);
  });

  it('finds the endpoint in SPIFFE_ENDPOINT_SOCKET when none is given', async () => {
    const api = await server();
    api.send(x509Response([entry(first)]));
    const { source } = open({ env: { SPIFFE_ENDPOINT_SOCKET: api.endpoint } });
    expect(source.endpoint).toBe(api.endpoint);
    expect((await source.ready()).svid.id.toString()).toBe(ID);
  });

  it('follows a rotation, keeping the bundle set object when the bundles did not change', async () => {
    const api = await server();
    api.send(x509Response([entry(first)]));
    const { source } = open({ endpoint: api.endpoint });
    const before = await source.ready();

    const updated = nextUpdate(source);
    api.send(x509Response([entry(second)]));
    const after = await updated;
    expect(after.svid.serialNumber).toBe(second.cert.serialNumber);
    expect(after.bundles).toBe(before.bundles);
    expect(source.current()).toBe(after);
  });

  it('adds and removes federated bundles with the messages that carry them (keyed spiffe://td)', async () => {
    const api = await server();
    api.send(x509Response([entry(first)]));
    const { source } = open({ endpoint: api.endpoint });
    await source.ready();

    let updated = nextUpdate(source);
    api.send(x509Response([entry(first)], { 'spiffe://other.org': [caB] }));
    let material = await updated;
    expect(material.bundles.trustDomains().map((td) => td.name).sort()).toEqual(['example.org', 'other.org']);
    expect(material.bundles.get('other.org')!.hasAuthority(caB.rootCert)).toBe(true);
    expect(material.svid.serialNumber).toBe(first.cert.serialNumber);

    // The next message without it is a redaction (every message is the full set).
    updated = nextUpdate(source);
    api.send(x509Response([entry(first)]));
    material = await updated;
    expect(material.bundles.trustDomains().map((td) => td.name)).toEqual(['example.org']);
    expect(source.getX509BundleForTrustDomain(material.bundles.trustDomains()[0]!)).toBe(material.bundles.get('example.org'));
  });

  it.each([
    ['no SVIDs at all', async () => x509Response([]), /holds no X509-SVID/],
    ['a key that does not match the leaf', async () => x509Response([{ ...entry(first), minted: { ...first, keyDer: second.keyDer } }]), /private key does not match/],
    ['a spiffe_id field that is not the certificate\'s', async () => x509Response([entry(first, { spiffeId: 'spiffe://example.org/other' })]), /spiffe_id field says/],
    [
      'a chain that ends in another trust domain\'s CA',
      async () => x509Response([entry(await caB.mint(ID), { bundle: [caA] })], { 'spiffe://other.org': [caB] }),
      /does not verify against the bundle of its own trust domain/,
    ],
    ['an expired SVID', async () => x509Response([entry(await caA.mint(ID, { notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) }))]), /expired/],
    ['a federated bundle keyed by a bare name', async () => x509Response([entry(first)], { 'other.org': [caB] }), /not a trust domain SPIFFE ID/],
    ['an empty own bundle', async () => x509Response([entry(first, { bundle: [] })]), /is empty/],
  ])('refuses a message with %s and keeps the last good material', async (_name, build, reason) => {
    const api = await server();
    api.send(x509Response([entry(first)]));
    const { source } = open({ endpoint: api.endpoint });
    const good = await source.ready();
    const updates: X509Material[] = [];
    source.on('update', (m) => updates.push(m));

    const refused = nextError(source);
    api.send(await build());
    const error = await refused;
    expect(error).toBeInstanceOf(WorkloadApiError);
    expect(error.kind).toBe('invalid-response');
    expect(error.message).toMatch(/^workloadapi: /);
    expect(error.message).toMatch(reason);
    expect(source.current()).toBe(good);
    expect(updates).toEqual([]);

    // The stream stays up and the next good message is taken.
    const updated = nextUpdate(source);
    api.send(x509Response([entry(second)]));
    expect((await updated).svid.serialNumber).toBe(second.cert.serialNumber);
  });

  it('chooses among several SVIDs by spiffeId or hint, else takes the first', async () => {
    const other = await caA.mint('spiffe://example.org/ns/default/sa/other');
    const api = await server();
    api.send(x509Response([entry(first, { hint: 'internal' }), entry(other, { spiffeId: 'spiffe://example.org/ns/default/sa/other', hint: 'external' })]));

    expect((await open({ endpoint: api.endpoint }).source.ready()).svid.id.toString()).toBe(ID);
    const byId = open({ endpoint: api.endpoint, spiffeId: 'spiffe://example.org/ns/default/sa/other' }).source;
    expect((await byId.ready()).svid.serialNumber).toBe(other.cert.serialNumber);
    const byHint = open({ endpoint: api.endpoint, hint: 'external' }).source;
    expect((await byHint.ready()).svid.serialNumber).toBe(other.cert.serialNumber);

    const missing = open({ endpoint: api.endpoint, spiffeId: 'spiffe://example.org/nobody' });
    const error = await nextError(missing.source);
    expect(error.kind).toBe('invalid-response');
    expect(error.message).toContain('no X509-SVID with SPIFFE ID spiffe://example.org/nobody');
    expect(error.message).toContain('spiffe://example.org/ns/default/sa/other (hint "external")');
  });
});

describe('WorkloadApiSource: stream failures', () => {
  it('InvalidArgument (the missing-header answer) is rejected for good: no retry, ready() rejects at once', async () => {
    const api = await server();
    api.failNext(status.INVALID_ARGUMENT, 'security header missing from request');
    const { source, clock, errors } = open({ endpoint: api.endpoint });

    const failure = await source.ready().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkloadApiError);
    expect((failure as WorkloadApiError).kind).toBe('rejected');
    expect((failure as WorkloadApiError).code).toBe(status.INVALID_ARGUMENT);
    expect((failure as WorkloadApiError).message).toContain('security header missing from request');
    expect(errors.map((e) => e.kind)).toEqual(['rejected']);
    expect(clock.pendingTimers).toBe(0);

    await clock.advance(120_000);
    expect(api.calls).toHaveLength(1);
    expect(source.connected).toBe(false);
    await expect(source.ready()).rejects.toMatchObject({ kind: 'rejected' });
  });

  it('Unavailable: reconnects after the backoff on the injected clock', async () => {
    const api = await server();
    api.failNext(status.UNAVAILABLE, 'agent is starting');
    api.send(x509Response([entry(first)]));
    const { source, clock } = open({ endpoint: api.endpoint, backoff: { initialMs: 1_000, maxMs: 8_000 } });
    const ready = source.ready(600_000);

    const error = await nextError(source);
    expect(error.kind).toBe('unavailable');
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.message).toContain('agent is starting');
    expect(api.calls).toHaveLength(1);
    // The retry timer (half to all of initialMs) and ready()'s deadline.
    const [retry] = clock.pendingDelays();
    expect(retry).toBeGreaterThanOrEqual(500);
    expect(retry).toBeLessThanOrEqual(1_000);

    await clock.advance(retry!);
    expect((await ready).svid.serialNumber).toBe(first.cert.serialNumber);
    expect(api.calls).toHaveLength(2);
  });

  it('PermissionDenied (no identity yet) is retried with growing delays', async () => {
    const api = await server();
    api.failNext(status.PERMISSION_DENIED, 'no identity issued');
    api.failNext(status.PERMISSION_DENIED, 'no identity issued');
    api.send(x509Response([entry(first)]));
    const { source, clock } = open({ endpoint: api.endpoint, backoff: { initialMs: 1_000, maxMs: 8_000 } });
    const ready = source.ready(600_000);

    let error = await nextError(source);
    expect(error.kind).toBe('permission-denied');
    expect(error.code).toBe(status.PERMISSION_DENIED);
    const firstDelay = clock.pendingDelays()[0]!;
    const next = nextError(source);
    await clock.advance(firstDelay);
    error = await next;
    expect(error.kind).toBe('permission-denied');
    const secondDelay = clock.pendingDelays()[0]!;
    expect(secondDelay).toBeGreaterThanOrEqual(1_000);
    expect(secondDelay).toBeLessThanOrEqual(2_000);

    await clock.advance(secondDelay);
    expect((await ready).svid.id.toString()).toBe(ID);
    expect(api.calls).toHaveLength(3);
  });

  it('keeps the material while the agent restarts, then resumes the stream and follows the next rotation', async () => {
    const api = await server();
    api.send(x509Response([entry(first)]));
    const { source, clock } = open({ endpoint: api.endpoint, backoff: { initialMs: 200, maxMs: 200 } });
    const before = await source.ready();
    const states: boolean[] = [];
    source.on('state', (connected) => states.push(connected));

    const down = nextError(source);
    api.stop();
    expect((await down).kind).toBe('unavailable');
    expect(source.connected).toBe(false);
    expect(source.current()).toBe(before);

    await api.restart();
    api.send(x509Response([entry(second)]));
    // grpc-js may still fail the first attempts while its channel reconnects: each failure is one
    // more 'error' and one more timer on our clock, fired here until the stream is back.
    const updated = nextUpdate(source);
    let done = false;
    void updated.then(() => (done = true));
    while (!done) {
      const attempt = Promise.race([updated, nextError(source)]);
      await clock.fireNext();
      await attempt;
    }
    expect((await updated).svid.serialNumber).toBe(second.cert.serialNumber);
    expect(source.connected).toBe(true);
    expect(states).toEqual([false, true]);
  });

  it('close() ends the stream, cancels the retry and rejects a pending ready()', async () => {
    const api = await server();
    const { source, clock } = open({ endpoint: api.endpoint });
    const ready = source.ready(600_000).then(
      () => undefined,
      (err: unknown) => err,
    );
    await api.streamsOpen(1);

    await source.close();
    expect(await ready).toMatchObject({ kind: 'closed' });
    await expect(source.ready()).rejects.toMatchObject({ kind: 'closed' });
    expect(() => source.current()).toThrow(expect.objectContaining({ kind: 'not-ready' }));
    expect(source.connected).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    await source.close();
  });

  it('ready() times out on the clock, naming the last problem', async () => {
    const api = await server();
    api.failNext(status.PERMISSION_DENIED, 'no identity issued');
    const { source, clock } = open({ endpoint: api.endpoint, backoff: { initialMs: 60_000, maxMs: 60_000 } });
    const ready = source.ready(5_000).then(
      () => undefined,
      (err: unknown) => err,
    );
    await nextError(source);
    await clock.advance(5_000);
    const failure = await ready;
    expect(failure).toMatchObject({ kind: 'timeout' });
    expect((failure as Error).message).toMatch(/within 5000 ms \(last problem: the Workload API at unix:\/\/\/.* has no identity for this workload \(PERMISSION_DENIED: no identity issued\)/);
  });
});

describe('WorkloadApiSource: configuration', () => {
  it.each([
    [{ env: {} }, /no Workload API endpoint: pass the `endpoint` option or set SPIFFE_ENDPOINT_SOCKET/],
    [{ env: { SPIFFE_ENDPOINT_SOCKET: 'unix://relative.sock' } }, /SPIFFE_ENDPOINT_SOCKET "unix:\/\/relative.sock" must not have an authority/],
    [{ endpoint: 'tcp://localhost:8081' }, /endpoint "tcp:\/\/localhost:8081" must name an IP address as the host/],
    [{ endpoint: 'unix:///run/agent.sock', spiffeId: 'example.org/x' }, /spiffeId option "example.org\/x" is not a SPIFFE ID/],
    [{ endpoint: 'unix:///run/agent.sock', hint: '' }, /hint option must be a non-empty string/],
    [{ endpoint: 'unix:///run/agent.sock', backoff: { initialMs: 0 } }, /backoff.initialMs must be a positive number/],
    [{ endpoint: 'unix:///run/agent.sock', backoff: { initialMs: 100, maxMs: 50 } }, /backoff.maxMs must be a number of milliseconds >= backoff.initialMs/],
  ] as [WorkloadApiSourceOptions, RegExp][])('refuses %j with a config error', (options, message) => {
    let thrown: unknown;
    try {
      new WorkloadApiSource(options);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(WorkloadApiError);
    expect((thrown as WorkloadApiError).kind).toBe('config');
    expect((thrown as WorkloadApiError).message).toMatch(message);
  });
});

describe('WorkloadApiSource as an X509Source', () => {
  it('drives createHttpsServer and SpiffeDispatcher unchanged, including a rotation', async () => {
    const serverId = 'spiffe://example.org/ns/default/sa/api';
    const clientId = 'spiffe://example.org/ns/default/sa/web';
    const serverSvid = await caA.mint(serverId);
    const clientSvid = await caA.mint(clientId);
    const api = await server();
    const both = (s: MintedSvid): ReturnType<typeof x509Response> =>
      x509Response([entry(s, { spiffeId: serverId }), entry(clientSvid, { spiffeId: clientId, hint: 'client' })]);
    api.send(both(serverSvid));
    const serverSource = open({ endpoint: api.endpoint }).source;
    const clientSource = open({ endpoint: api.endpoint, hint: 'client' }).source;
    await Promise.all([serverSource.ready(), clientSource.ready()]);

    const https = createHttpsServer(serverSource, authorizeId(clientId), {}, (req, res) => {
      res.end(`${peerSpiffeId(req)?.toString()}`);
    });
    const listening = await listen(https);
    cleanups.push(() => listening.close());
    const dispatcher = new SpiffeDispatcher(clientSource, authorizeId(serverId));
    cleanups.push(() => dispatcher.close());

    const res = await fetch(listening.url, { dispatcher });
    expect(await res.text()).toBe(clientId);

    const rotated = await caA.mint(serverId);
    const updated = nextUpdate(serverSource);
    api.send(both(rotated));
    expect((await updated).svid.serialNumber).toBe(rotated.cert.serialNumber);
    // The next handshake presents the rotated SVID, and requests keep being authorized.
    const again = await httpsGet(listening.port, createClientTlsOptions(clientSource, authorizeId(serverId)));
    expect(again.serverSerial).toBe(rotated.cert.serialNumber);
    expect(again.body).toBe(clientId);
    expect(await (await fetch(listening.url, { dispatcher })).text()).toBe(clientId);
  });
});
