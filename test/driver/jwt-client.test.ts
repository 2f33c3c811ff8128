import { status } from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { DelegatedIdentityClient } from '../../driver/src/identity/delegated/delegated-identity-client.js';
import { AgentError, type JwtBundleUpdate } from '../../driver/src/identity/identity-backend.js';
import { JwksError, parseJwks } from '../../driver/src/identity/jwks.js';
import { jwtBundleUpdateFromWire, jwtSvidsFromWire, WireError } from '../../driver/src/identity/delegated/wire.js';
import { waitFor } from '../helpers/wait-for.js';
import { k8s, registrations, startAgent, type AgentFixture } from '../helpers/agent-harness.js';

const ENTRIES = registrations({
  entries: [
    { spiffeId: 'spiffe://example.org/web', selectors: ['k8s:ns:default', 'k8s:sa:web'], federatesWith: ['other.org'], hint: 'web' },
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

function kids(update: JwtBundleUpdate, td: string): string[] {
  return parseJwks(update.get(td)!).keys.map((key) => key.kid as string);
}

describe('DelegatedIdentityClient JWT', () => {
  it('fetches JWT-SVIDs for selectors and audiences', async () => {
    const { socketPath } = await agent();
    const c = client(socketPath);
    const svids = await c.fetchJwtSvids(k8s('ns:default', 'sa:web', 'pod-uid:1'), ['api', 'db']);
    expect(svids).toHaveLength(1);
    const [svid] = svids;
    expect(svid).toMatchObject({ spiffeId: 'spiffe://example.org/web', hint: 'web' });
    const claims = decodeJwt(svid!.token);
    expect(claims).toMatchObject({ sub: 'spiffe://example.org/web', aud: ['api', 'db'] });
    expect(svid!.expiresAt).toBe(String(claims.exp));
    expect(svid!.issuedAt).toBe(String(claims.iat));
    expect(await c.fetchJwtSvids(k8s('ns:nobody'), ['api'])).toEqual([]);
    await expect(c.fetchJwtSvids(k8s('ns:default'), [])).rejects.toThrow(/at least one audience/);
  });

  it('turns agent refusals into AgentErrors that say what to fix', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    await dev.setDenyAll(true);
    const denied = await c.fetchJwtSvids(k8s('ns:default'), ['api']).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(AgentError);
    expect(denied).toMatchObject({ code: status.PERMISSION_DENIED, kind: 'permission-denied' });
    expect((denied as Error).message).toMatch(/^spire: FetchJWTSVIDs: .*authorized_delegates/);

    await dev.setDenyAll(false);
    await dev.setAnswering(false);
    const down = await c.fetchJwtSvids(k8s('ns:default'), ['api']).catch((e: unknown) => e);
    expect(down).toMatchObject({ code: status.UNAVAILABLE, kind: 'unavailable' });
  });

  it('cancels a fetch when its signal aborts', async () => {
    const { socketPath } = await agent();
    const c = client(socketPath);
    const controller = new AbortController();
    controller.abort();
    await expect(c.fetchJwtSvids(k8s('ns:default'), ['api'], controller.signal)).rejects.toMatchObject({ code: status.CANCELLED });
  });

  it('shares one JWT bundle stream, keys it by trust domain name and replays the latest', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    const seen: JwtBundleUpdate[] = [];
    c.watchJwtBundles((b) => seen.push(b));
    await waitFor(() => seen.length > 0, { message: 'JWT bundles' });
    expect([...seen[0]!.keys()].sort()).toEqual(['example.org', 'other.org']);
    expect(kids(seen[0]!, 'example.org')).toEqual([dev.jwtKeyId]);
    expect(seen[0]!.get('example.org')).toEqual(dev.jwtBundles()['spiffe://example.org']);

    const late: JwtBundleUpdate[] = [];
    c.watchJwtBundles((b) => late.push(b));
    expect(late).toHaveLength(1);
    expect(dev.jwtBundleStreamCount).toBe(1);

    await dev.rotateJwtAuthority();
    await waitFor(() => seen.length > 1 && kids(seen.at(-1)!, 'example.org').length === 2, { message: 'the rotated JWT bundle' });
    expect(late.at(-1)).toBe(seen.at(-1));
  });

  it('reconnects the JWT bundle stream after the agent comes back and picks up changes made meanwhile', async () => {
    const { socketPath, agent: dev } = await agent();
    const c = client(socketPath);
    const seen: JwtBundleUpdate[] = [];
    c.watchJwtBundles((b) => seen.push(b));
    await waitFor(() => seen.length > 0, { message: 'JWT bundles' });
    await dev.setAnswering(false);
    await dev.rotateJwtAuthority();
    await dev.setAnswering(true);
    await waitFor(() => kids(seen.at(-1)!, 'example.org').length === 2, { message: 'bundles after reconnecting' });
  });

  it('keeps the previous JWT bundles when the agent sends a document that is not a JWKS', () => {
    expect(() => jwtBundleUpdateFromWire({ bundles: { 'spiffe://example.org': Buffer.from('not json') } })).toThrow(WireError);
    expect(() => jwtBundleUpdateFromWire({ bundles: { 'spiffe://example.org': Buffer.from('{"kty":"EC"}') } })).toThrow(/no "keys" array/);
    expect(() => jwtBundleUpdateFromWire({ bundles: { 'spiffe://example.org/x': Buffer.from('{"keys":[]}') } })).toThrow(/not a trust domain/);
    const ok = jwtBundleUpdateFromWire({ bundles: { 'spiffe://example.org': Buffer.from('{"keys":[]}'), 'other.org': Buffer.from('{"keys":[{}]}') } });
    expect([...ok.keys()]).toEqual(['example.org', 'other.org']);
    expect(() => parseJwks('{"keys":[1]}')).toThrow(JwksError);
    expect(() => parseJwks('[]')).toThrow(/not a JSON object/);
  });

  it('rejects unusable JWT-SVID entries without quoting the token', () => {
    const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJl';
    let thrown: unknown;
    try {
      jwtSvidsFromWire({ svids: [{ token, id: null, expires_at: '1', issued_at: '0', hint: '' }] });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(WireError);
    expect((thrown as Error).message).not.toContain(token);
    expect(() => jwtSvidsFromWire({ svids: [{ token: '', id: { trust_domain: 'example.org', path: '/a' }, expires_at: '1', issued_at: '0', hint: '' }] })).toThrow(
      /has no token/,
    );
  });
});
