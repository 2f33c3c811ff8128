import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyX509Svid, X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import type { WireSubscribeToX509BundlesResponse, WireSubscribeToX509SvidsResponse } from '../../driver/src/identity/delegated/wire.js';
import { waitFor } from '../helpers/wait-for.js';
import { k8s, rawClient, record, registrations, startAgent, TD, type AgentFixture, type RawDelegatedIdentity } from '../helpers/agent-harness.js';

const ENTRIES = registrations({
  entries: [
    { spiffeId: 'spiffe://example.org/ns/default', selectors: ['k8s:ns:default'] },
    { spiffeId: 'spiffe://example.org/web', selectors: ['k8s:ns:default', 'k8s:sa:web'], federatesWith: ['other.org'], hint: 'web' },
    { spiffeId: 'spiffe://example.org/db', selectors: ['k8s:ns:default', 'k8s:sa:db'] },
  ],
  federatedTrustDomains: ['other.org'],
});

let fixture: AgentFixture | null = null;
let client: RawDelegatedIdentity | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await fixture?.cleanup();
  fixture = null;
});

async function setup(options: Parameters<typeof startAgent>[0] = {}): Promise<{ fixture: AgentFixture; client: RawDelegatedIdentity }> {
  fixture = await startAgent({ registrations: ENTRIES, ...options });
  client = rawClient(fixture.socketPath);
  return { fixture, client };
}

function bundleSet(message: WireSubscribeToX509BundlesResponse): X509BundleSet {
  return new X509BundleSet(
    Object.entries(message.ca_certificates).map(([key, der]) => X509Bundle.fromDer(key.replace('spiffe://', ''), der)),
  );
}

function serials(message: WireSubscribeToX509SvidsResponse): string[] {
  return message.x509_svids.map((s) => new X509Certificate(s.x509_svid!.cert_chain[0]!).serialNumber);
}

describe('DevAgent', () => {
  it('issues valid X509-SVIDs for the entries whose selectors are a subset of the request', async () => {
    const { client } = await setup();
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default', 'sa:web', 'pod-uid:1') }));
    const bundles = record(client.SubscribeToX509Bundles({}));
    await waitFor(() => svids.messages.length > 0 && bundles.messages.length > 0, { message: 'first messages' });

    const message = svids.messages[0]!;
    const ids = message.x509_svids.map((s) => `spiffe://${s.x509_svid!.id!.trust_domain}${s.x509_svid!.id!.path}`);
    expect(ids).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/web']);
    expect(message.federates_with).toEqual(['spiffe://other.org']);
    expect(message.x509_svids[1]!.x509_svid!.hint).toBe('web');

    const set = bundleSet(bundles.messages[0]!);
    expect(Object.keys(bundles.messages[0]!.ca_certificates).sort()).toEqual(['spiffe://example.org', 'spiffe://other.org']);
    for (const item of message.x509_svids) {
      const svid = X509Svid.fromDer(item.x509_svid!.cert_chain, item.x509_svid_key);
      expect(svid.id.toString()).toBe(ids[message.x509_svids.indexOf(item)]);
      expect(verifyX509Svid(svid.certificates, set).id.toString()).toBe(svid.id.toString());
      expect(item.x509_svid!.expires_at).toBe(String(Math.floor(svid.notAfter.getTime() / 1000)));
      expect(svid.leaf.ca).toBe(false);
    }
  });

  it('shares one SVID per entry among streams with the same match', async () => {
    const { client } = await setup();
    const a = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default', 'sa:db', 'pod-uid:a') }));
    const b = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default', 'sa:db', 'pod-uid:b') }));
    await waitFor(() => a.messages.length > 0 && b.messages.length > 0, { message: 'both streams' });
    expect(serials(a.messages[0]!)).toEqual(serials(b.messages[0]!));
  });

  it('serves a thousand streams with one issuance per entry', async () => {
    const { fixture, client } = await setup();
    const streams = Array.from({ length: 1000 }, (_, i) =>
      record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default', `pod-uid:${i}`) })),
    );
    await waitFor(() => streams.every((s) => s.messages.length > 0), { message: 'every stream to get its SVID', timeoutMs: 20_000 });
    expect(new Set(streams.map((s) => serials(s.messages[0]!)[0])).size).toBe(1);
    await fixture.agent.rotateNow();
    await waitFor(() => streams.every((s) => s.messages.length > 1), { message: 'every stream to get the rotation', timeoutMs: 20_000 });
    expect(new Set(streams.map((s) => serials(s.messages[1]!)[0])).size).toBe(1);
    expect(streams.every((s) => s.messages.length === 2)).toBe(true);
    for (const s of streams) s.call.cancel();
    await waitFor(() => fixture.agent.streamCounts.svid === 0, { message: 'streams to be released' });
  });

  it('sends an empty set when nothing matches, then the SVID once an entry is added', async () => {
    const { fixture, client } = await setup();
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:late') }));
    await waitFor(() => svids.messages.length > 0, { message: 'the empty update' });
    expect(svids.messages[0]!.x509_svids).toEqual([]);
    await fixture.agent.setRegistrations([
      ...ENTRIES.entries,
      ...registrations({ entries: [{ spiffeId: 'spiffe://example.org/late', selectors: ['k8s:ns:late'] }] }).entries,
    ]);
    await waitFor(() => svids.messages.length > 1, { message: 'the update after the entry was added' });
    expect(svids.messages[1]!.x509_svids.map((s) => s.x509_svid!.id!.path)).toEqual(['/late']);
  });

  it('pushes fresh SVIDs on rotateNow and at half-life', async () => {
    const { fixture, client } = await setup({ svidTtlMs: 1_500 });
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default') }));
    await waitFor(() => svids.messages.length > 0, { message: 'first SVID' });
    const first = serials(svids.messages[0]!)[0];
    await fixture.agent.rotateNow();
    await waitFor(() => svids.messages.length > 1, { message: 'rotated SVID' });
    const second = serials(svids.messages[1]!)[0];
    expect(second).not.toBe(first);
    // The TTL is short, so the half-life timer reissues without being asked.
    await waitFor(() => svids.messages.length > 2, { message: 'half-life rotation' });
    expect(serials(svids.messages[2]!)[0]).not.toBe(second);
  });

  it('rotates the CA with an overlap bundle holding old and new roots', async () => {
    const { fixture, client } = await setup();
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default') }));
    const bundles = record(client.SubscribeToX509Bundles({}));
    await waitFor(() => svids.messages.length > 0 && bundles.messages.length > 0, { message: 'first messages' });
    const oldRoots = bundleSet(bundles.messages[0]!).get(TD)!.authorities;
    expect(oldRoots).toHaveLength(1);

    await fixture.agent.rotateCa();
    await waitFor(() => svids.messages.length > 1 && bundles.messages.length > 1, { message: 'post-rotation messages' });
    const overlap = bundleSet(bundles.messages[1]!);
    expect(overlap.get(TD)!.authorities).toHaveLength(2);
    const item = svids.messages[1]!.x509_svids[0]!;
    const svid = X509Svid.fromDer(item.x509_svid!.cert_chain, item.x509_svid_key);
    const anchor = verifyX509Svid(svid.certificates, overlap).chain.at(-1)!;
    expect(anchor.fingerprint256).not.toBe(oldRoots[0]!.fingerprint256);
    // The old SVID still verifies during the overlap.
    const old = svids.messages[0]!.x509_svids[0]!;
    expect(() => verifyX509Svid(old.x509_svid!.cert_chain, overlap)).not.toThrow();

    await fixture.agent.dropOldCa();
    await waitFor(() => bundles.messages.length > 2, { message: 'bundle without the old root' });
    const after = bundleSet(bundles.messages[2]!);
    expect(after.get(TD)!.authorities).toHaveLength(1);
    expect(() => verifyX509Svid(old.x509_svid!.cert_chain, after)).toThrow();
    expect(() => verifyX509Svid(svid.certificates, after)).not.toThrow();
  });

  it('adds and removes federated bundles and federates_with', async () => {
    const { fixture, client } = await setup();
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default', 'sa:web') }));
    const bundles = record(client.SubscribeToX509Bundles({}));
    await waitFor(() => svids.messages.length > 0 && bundles.messages.length > 0, { message: 'first messages' });

    await fixture.agent.addFederatedTrustDomain('third.org');
    await waitFor(() => bundles.messages.length > 1, { message: 'bundle with third.org' });
    expect(Object.keys(bundles.messages[1]!.ca_certificates).sort()).toEqual([
      'spiffe://example.org',
      'spiffe://other.org',
      'spiffe://third.org',
    ]);
    const third = bundleSet(bundles.messages[1]!).get('third.org')!;
    expect(third.authorities).toHaveLength(1);

    await fixture.agent.removeFederatedTrustDomain('other.org');
    await waitFor(() => bundles.messages.length > 2 && svids.messages.length > 1, { message: 'removal' });
    expect(Object.keys(bundles.messages[2]!.ca_certificates).sort()).toEqual(['spiffe://example.org', 'spiffe://third.org']);
    expect(svids.messages[1]!.federates_with).toEqual([]);
  });

  it('rejects pid-based and malformed requests with InvalidArgument', async () => {
    const { client } = await setup();
    const cases = [
      { pid: 42 },
      { pid: 42, selectors: k8s('ns:default') },
      { selectors: [] },
      { selectors: [{ type: 'k8s', value: '' }] },
    ];
    const recordings = cases.map((request) => record(client.SubscribeToX509SVIDs(request)));
    await waitFor(() => recordings.every((r) => r.status !== null), { message: 'statuses' });
    expect(recordings.map((r) => r.status!.code)).toEqual(cases.map(() => status.INVALID_ARGUMENT));
    expect(recordings[0]!.status!.details).toMatch(/pid-based requests are not supported/);
    expect(recordings[1]!.status!.details).toMatch(/cannot use both selectors and pid/);
  });

  it('answers PermissionDenied when it does not trust the caller', async () => {
    const { fixture, client } = await setup({ denyAll: true });
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default') }));
    const bundles = record(client.SubscribeToX509Bundles({}));
    await waitFor(() => svids.status && bundles.status, { message: 'statuses' });
    expect(svids.status!.code).toBe(status.PERMISSION_DENIED);
    expect(bundles.status!.code).toBe(status.PERMISSION_DENIED);

    await fixture.agent.setDenyAll(false);
    const again = record(client.SubscribeToX509Bundles({}));
    await waitFor(() => again.messages.length > 0, { message: 'bundles once allowed' });
    await fixture.agent.setDenyAll(true);
    await waitFor(() => again.status, { message: 'stream ended on deny' });
    expect(again.status!.code).toBe(status.PERMISSION_DENIED);
  });

  it('looks down when not answering and serves again afterwards', async () => {
    const { fixture, client } = await setup();
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:default') }));
    await waitFor(() => svids.messages.length > 0, { message: 'first SVID' });

    await fixture.agent.setAnswering(false);
    await waitFor(() => svids.status, { message: 'stream end' });
    expect(svids.status!.code).toBe(status.UNAVAILABLE);
    const refused = record(client.SubscribeToX509Bundles({}));
    await waitFor(() => refused.status, { message: 'refused call' });
    expect(refused.status!.code).toBe(status.UNAVAILABLE);

    await fixture.agent.setAnswering(true);
    // The channel may still be backing off from the refused call, so a call may fail fast: retry.
    await waitFor(
      async () => {
        const back = record(client.SubscribeToX509Bundles({}));
        await waitFor(() => back.messages.length > 0 || back.status !== null);
        back.call.cancel();
        return back.messages.length > 0;
      },
      { message: 'bundles after coming back', intervalMs: 100 },
    );
  });

  it('reloads the registration file and keeps the old set when the file is bad', async () => {
    const file = join(await import('node:os').then((os) => os.tmpdir()), `regs-${process.pid}-${Date.now()}.json`);
    await writeFile(file, JSON.stringify({ entries: [{ spiffeId: 'spiffe://example.org/a', selectors: ['k8s:ns:a'] }] }));
    const { fixture, client } = await setup({ registrations: undefined, registrationsFile: file });
    const svids = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:a') }));
    await waitFor(() => svids.messages.length > 0, { message: 'first' });
    expect(svids.messages[0]!.x509_svids).toHaveLength(1);

    await writeFile(file, '{"entries": [{"spiffeId": "spiffe://example.org/b"}]}');
    await expect(fixture.agent.reloadRegistrations()).rejects.toThrow(/entries\[0\]\.selectors/);
    await writeFile(file, JSON.stringify({ entries: [] }));
    await fixture.agent.reloadRegistrations();
    await waitFor(() => svids.messages.length > 1, { message: 'update after reload' });
    expect(svids.messages[1]!.x509_svids).toEqual([]);
    await import('node:fs/promises').then((fs) => fs.rm(file, { force: true }));
  });

  it('logs a development-only banner at start', async () => {
    const lines: string[] = [];
    const logger = {
      debug() {},
      info() {},
      warn: (_obj: object, msg?: string) => void lines.push(msg ?? ''),
      error() {},
    };
    await setup({ logger });
    expect(lines.some((l) => /DEVELOPMENT ONLY — NOT A SPIRE AGENT/.test(l))).toBe(true);
  });
});
