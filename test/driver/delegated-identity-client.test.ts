import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyX509Svid, X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { DevAgent } from '../../dev/src/dev-agent/server.js';
import { DelegatedIdentityClient } from '../../driver/src/identity/delegated/delegated-identity-client.js';
import type { AgentError, BundleUpdate, X509SvidUpdate } from '../../driver/src/identity/identity-backend.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait-for.js';
import { k8s, registrations, startAgent, TD, type AgentFixture } from '../helpers/agent-harness.js';

const ENTRIES = registrations({
  entries: [
    { spiffeId: 'spiffe://example.org/web', selectors: ['k8s:ns:default', 'k8s:sa:web'], federatesWith: ['other.org'] },
    { spiffeId: 'spiffe://example.org/db', selectors: ['k8s:ns:default', 'k8s:sa:db'] },
  ],
  federatedTrustDomains: ['other.org'],
});
const FAST = { initialMs: 20, maxMs: 200 };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function agent(options: Parameters<typeof startAgent>[0] = {}): Promise<AgentFixture> {
  const fixture = await startAgent({ registrations: ENTRIES, ...options });
  cleanups.push(() => fixture.cleanup());
  return fixture;
}

function client(socketPath: string, options: Partial<ConstructorParameters<typeof DelegatedIdentityClient>[0]> = {}) {
  const c = new DelegatedIdentityClient({ socketPath, backoff: FAST, ...options });
  cleanups.push(() => c.close());
  return c;
}

function watch(c: DelegatedIdentityClient, ...selectors: string[]) {
  const updates: X509SvidUpdate[] = [];
  const errors: AgentError[] = [];
  const subscription = c.watchX509Svids(k8s(...selectors), {
    onUpdate: (u) => updates.push(u),
    onError: (e) => errors.push(e),
  });
  return { updates, errors, subscription };
}

describe('DelegatedIdentityClient', () => {
  it('shares one bundle stream, strips spiffe:// from keys and replays the latest to new listeners', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    const states: boolean[] = [];
    c.on('state', (connected) => states.push(connected));
    const seen: BundleUpdate[] = [];
    c.watchBundles((b) => seen.push(b));
    await waitFor(() => seen.length > 0, { message: 'bundles' });
    expect([...seen[0]!.keys()].sort()).toEqual(['example.org', 'other.org']);
    expect(c.connected).toBe(true);
    expect(states).toEqual([true]);

    const late: BundleUpdate[] = [];
    const unwatch = c.watchBundles((b) => late.push(b));
    expect(late).toEqual([seen[0]]);
    expect(dev.streamCounts.bundle).toBe(1);
    unwatch();
    await dev.addFederatedTrustDomain('third.org');
    await waitFor(() => seen.length > 1, { message: 'bundle update' });
    expect([...seen[1]!.keys()].sort()).toEqual(['example.org', 'other.org', 'third.org']);
    expect(late).toHaveLength(1);
  });

  it('opens one X509-SVID stream per watch and delivers verifiable SVIDs', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    let bundles: BundleUpdate | null = null;
    c.watchBundles((b) => (bundles = b));
    const web = watch(c, 'ns:default', 'sa:web', 'pod-uid:1');
    const db = watch(c, 'ns:default', 'sa:db', 'pod-uid:2');
    await waitFor(() => web.updates.length > 0 && db.updates.length > 0 && bundles, { message: 'updates' });
    expect(dev.streamCounts.svid).toBe(2);

    const [svid] = web.updates[0]!.svids;
    expect(svid!.spiffeId).toBe('spiffe://example.org/web');
    expect(web.updates[0]!.federatesWith).toEqual(['other.org']);
    expect(db.updates[0]!.svids.map((s) => s.spiffeId)).toEqual(['spiffe://example.org/db']);
    const parsed = X509Svid.fromDer(svid!.chainDer, svid!.keyDer);
    const set = new X509BundleSet([...bundles!].map(([td, der]) => X509Bundle.fromDer(td, der)));
    expect(verifyX509Svid(parsed.certificates, set).id.toString()).toBe('spiffe://example.org/web');

    web.subscription.close();
    await waitFor(() => dev.streamCounts.svid === 1, { message: 'agent to see the closed stream' });
  });

  it('delivers a zero-SVID update as is, then the SVID once an entry matches', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    const w = watch(c, 'ns:new', 'sa:app');
    await waitFor(() => w.updates.length > 0, { message: 'empty update' });
    expect(w.updates[0]).toEqual({ svids: [], federatesWith: [] });
    await dev.setRegistrations([
      ...ENTRIES.entries,
      ...registrations({ entries: [{ spiffeId: 'spiffe://example.org/new', selectors: ['k8s:ns:new'] }] }).entries,
    ]);
    await waitFor(() => w.updates.length > 1, { message: 'update with the new entry' });
    expect(w.updates[1]!.svids.map((s) => s.spiffeId)).toEqual(['spiffe://example.org/new']);
    expect(w.errors).toEqual([]);
  });

  it('reports Unavailable while the agent is down and resubscribes when it is back', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    const states: boolean[] = [];
    c.on('state', (connected) => states.push(connected));
    const bundles: BundleUpdate[] = [];
    c.watchBundles((b) => bundles.push(b));
    const w = watch(c, 'ns:default', 'sa:web');
    await waitFor(() => w.updates.length > 0 && bundles.length > 0, { message: 'first updates' });

    await dev.setAnswering(false);
    await waitFor(() => w.errors.length >= 2 && !c.connected, { message: 'errors while down' });
    expect(w.errors.every((e) => e.kind === 'unavailable' && e.code === status.UNAVAILABLE)).toBe(true);
    expect(w.errors.at(-1)!.message).toContain(socketPath);
    expect(states).toEqual([true, false]);

    const before = { updates: w.updates.length, bundles: bundles.length };
    await dev.rotateNow();
    await dev.setAnswering(true);
    await waitFor(() => w.updates.length > before.updates && bundles.length > before.bundles && c.connected, {
      message: 'resubscribed streams',
    });
    expect(states).toEqual([true, false, true]);
    expect(w.updates.at(-1)!.svids[0]!.spiffeId).toBe('spiffe://example.org/web');
    expect(dev.streamCounts).toEqual({ svid: 1, bundle: 1 });
  });

  it('explains PermissionDenied and keeps retrying until the agent allows it', async () => {
    const { socketPath, agent: dev } = await agent({ denyAll: true });
    const c = client(socketPath);
    const w = watch(c, 'ns:default', 'sa:db');
    await waitFor(() => w.errors.length >= 2, { message: 'repeated errors' });
    const error = w.errors[0]!;
    expect(error.kind).toBe('permission-denied');
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.message).toContain(
      'this driver is not an authorized delegate of the SPIRE agent: add its SPIFFE ID to `authorized_delegates` ' +
        "in the agent's admin API settings (agent.conf `admin_socket_path` + `authorized_delegates`)",
    );
    await dev.setDenyAll(false);
    await waitFor(() => w.updates.length > 0, { message: 'update once authorized' });
  });

  it('follows the backoff schedule through the injected clock and stops after close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spire-csi-client-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'admin.sock');
    const clock = new FakeClock();
    const pending = { get size() { return clock.pendingTimers; } };
    const fire = () => void clock.runNext();
    const c = new DelegatedIdentityClient({
      socketPath,
      clock,
      backoff: { initialMs: 100, maxMs: 400, jitter: 'none' },
    });
    cleanups.push(() => c.close());
    const w = watch(c, 'ns:default', 'sa:web');
    await waitFor(() => pending.size === 1, { message: 'first retry scheduled (no agent yet)' });
    expect(clock.pendingDelays()).toEqual([100]);
    expect(w.errors[0]!.kind).toBe('unavailable');
    fire();
    await waitFor(() => pending.size === 1 && w.errors.length === 2, { message: 'second retry' });
    expect(clock.pendingDelays()).toEqual([200]);

    const dev = new DevAgent({ socketPath, trustDomain: TD, registrations: ENTRIES });
    cleanups.push(() => dev.stop());
    await dev.start();
    // The channel may still be backing off its own connection attempts; keep firing until it connects.
    await waitFor(
      () => {
        if (w.updates.length > 0) return true;
        if (pending.size > 0) fire();
        return false;
      },
      { message: 'update after the agent started', intervalMs: 50 },
    );
    expect(pending.size).toBe(0);

    const errorsBefore = w.errors.length;
    await c.close();
    await waitFor(() => dev.streamCounts.svid === 0, { message: 'stream cancelled at the agent' });
    await dev.setAnswering(false);
    await dev.rotateNow();
    expect(pending.size).toBe(0);
    expect(w.errors.length).toBe(errorsBefore);
    expect(c.connected).toBe(false);
    expect(() => c.watchX509Svids(k8s('ns:default'), { onUpdate() {} })).toThrow(/closed/);
  });

  it('insists on an absolute socket path', () => {
    expect(() => new DelegatedIdentityClient({ socketPath: 'relative/admin.sock' })).toThrow(/absolute/);
  });
});
