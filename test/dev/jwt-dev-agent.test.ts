import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { decodeProtectedHeader, importJWK, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDevAgentArgs } from '../../dev/src/dev-agent/main.js';
import type {
  WireFetchJwtSvidsRequest,
  WireFetchJwtSvidsResponse,
  WireSubscribeToJwtBundlesResponse,
} from '../../driver/src/identity/delegated/wire.js';
import { waitFor } from '../helpers/wait-for.js';
import { k8s, rawClient, record, registrations, startAgent, type AgentFixture, type RawDelegatedIdentity } from '../helpers/agent-harness.js';

const ENTRIES = registrations({
  entries: [
    { spiffeId: 'spiffe://example.org/ns/default', selectors: ['k8s:ns:default'] },
    { spiffeId: 'spiffe://example.org/web', selectors: ['k8s:ns:default', 'k8s:sa:web'], federatesWith: ['other.org'], hint: 'web' },
    { spiffeId: 'spiffe://example.org/db', selectors: ['k8s:ns:default', 'k8s:sa:db'] },
  ],
  federatedTrustDomains: ['other.org'],
});

interface JwtClient extends RawDelegatedIdentity {
  FetchJWTSVIDs(
    request: Partial<WireFetchJwtSvidsRequest>,
    callback: (error: ServiceError | null, response?: WireFetchJwtSvidsResponse) => void,
  ): void;
  SubscribeToJWTBundles(request: object): ClientReadableStream<WireSubscribeToJwtBundlesResponse>;
}

let fixture: AgentFixture | null = null;
let client: JwtClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await fixture?.cleanup();
  fixture = null;
});

async function setup(options: Parameters<typeof startAgent>[0] = {}): Promise<{ fixture: AgentFixture; client: JwtClient }> {
  fixture = await startAgent({ registrations: ENTRIES, ...options });
  client = rawClient(fixture.socketPath) as JwtClient;
  return { fixture, client };
}

function fetchJwt(c: JwtClient, request: Partial<WireFetchJwtSvidsRequest>): Promise<WireFetchJwtSvidsResponse> {
  return new Promise((resolve, reject) => c.FetchJWTSVIDs(request, (error, response) => (error ? reject(error) : resolve(response!))));
}

/** jose's JWKS helpers only take `use: "sig"` keys; JWT-SVID keys say `use: "jwt-svid"` (JWT-SVID.md §6). */
async function verify(token: string, keySet: JSONWebKeySet, audience = 'api'): Promise<JWTPayload> {
  const { kid } = decodeProtectedHeader(token);
  const jwk = keySet.keys.find((key) => key.kid === kid);
  if (jwk === undefined) throw new Error(`no key ${kid} in the bundle`);
  const { payload } = await jwtVerify(token, await importJWK(jwk, 'ES256'), { algorithms: ['ES256'], audience });
  return payload;
}

function jwks(message: WireSubscribeToJwtBundlesResponse, td: string): JSONWebKeySet {
  return JSON.parse(message.bundles[`spiffe://${td}`]!.toString('utf8')) as JSONWebKeySet;
}

describe('DevAgent JWT-SVIDs', () => {
  it('issues one ES256 JWT-SVID per matching entry that verifies against its JWT bundle', async () => {
    const { client } = await setup({ jwtSvidTtlMs: 120_000 });
    const bundles = record(client.SubscribeToJWTBundles({}));
    await waitFor(() => bundles.messages.length > 0, { message: 'the first JWT bundles' });
    const response = await fetchJwt(client, { audience: ['api', 'spiffe://example.org/api'], selectors: k8s('ns:default', 'sa:web', 'pod-uid:1') });

    const ids = response.svids.map((s) => `spiffe://${s.id!.trust_domain}${s.id!.path}`);
    expect(ids).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/web']);
    expect(response.svids[1]!.hint).toBe('web');
    const keySet = jwks(bundles.messages[0]!, 'example.org');
    expect(keySet.keys).toHaveLength(1);
    expect(keySet.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'jwt-svid' });
    expect(keySet.keys[0]!.d).toBeUndefined();
    for (const [index, svid] of response.svids.entries()) {
      const header = decodeProtectedHeader(svid.token);
      expect(header).toEqual({ alg: 'ES256', kid: keySet.keys[0]!.kid, typ: 'JWT' });
      const payload = await verify(svid.token, keySet);
      expect(payload.sub).toBe(ids[index]);
      expect(payload.aud).toEqual(['api', 'spiffe://example.org/api']);
      expect(payload.exp! - payload.iat!).toBe(120);
      expect(svid.expires_at).toBe(String(payload.exp));
      expect(svid.issued_at).toBe(String(payload.iat));
    }
  });

  it('serves JWT bundles keyed by trust domain ID, with its own key for each federated domain', async () => {
    const { fixture, client } = await setup();
    const bundles = record(client.SubscribeToJWTBundles({}));
    await waitFor(() => bundles.messages.length > 0, { message: 'the first JWT bundles' });
    const message = bundles.messages[0]!;
    expect(Object.keys(message.bundles).sort()).toEqual(['spiffe://example.org', 'spiffe://other.org']);
    const own = jwks(message, 'example.org').keys[0]!;
    const other = jwks(message, 'other.org').keys[0]!;
    expect(other.kid).not.toBe(own.kid);
    expect(other).toMatchObject({ use: 'jwt-svid', kty: 'EC' });
    expect(own.kid).toBe(fixture.agent.jwtKeyId);
    expect(fixture.agent.jwtBundleStreamCount).toBe(1);

    await fixture.agent.addFederatedTrustDomain('third.org');
    await waitFor(() => bundles.messages.length > 1, { message: 'the federation change' });
    expect(Object.keys(bundles.messages[1]!.bundles).sort()).toEqual(['spiffe://example.org', 'spiffe://other.org', 'spiffe://third.org']);
    // X.509 rotations leave the JWT bundle alone.
    await fixture.agent.rotateCa();
    await fixture.agent.rotateNow();
    expect(bundles.messages).toHaveLength(2);
  });

  it('rotates its JWT authority with an overlap: publish first, then sign, then drop the old key', async () => {
    const { fixture, client } = await setup();
    const bundles = record(client.SubscribeToJWTBundles({}));
    await waitFor(() => bundles.messages.length > 0, { message: 'the first JWT bundles' });
    const request = { audience: ['api'], selectors: k8s('ns:default', 'sa:db') };
    const before = (await fetchJwt(client, request)).svids[0]!.token;
    const oldKid = decodeProtectedHeader(before).kid;

    await fixture.agent.rotateJwtAuthority();
    await waitFor(() => bundles.messages.length > 1, { message: 'the bundle with the new key' });
    const overlap = jwks(bundles.messages.at(-1)!, 'example.org');
    expect(overlap.keys.map((k) => k.kid)).toContain(oldKid);
    expect(overlap.keys).toHaveLength(2);
    const after = (await fetchJwt(client, request)).svids[0]!.token;
    const newKid = decodeProtectedHeader(after).kid;
    expect(newKid).not.toBe(oldKid);
    expect(newKid).toBe(fixture.agent.jwtKeyId);
    for (const token of [before, after]) await verify(token, overlap);

    await fixture.agent.dropOldJwtAuthority();
    await waitFor(() => jwks(bundles.messages.at(-1)!, 'example.org').keys.length === 1, { message: 'the old key to be dropped' });
    const dropped = jwks(bundles.messages.at(-1)!, 'example.org');
    await verify(after, dropped);
    await expect(verify(before, dropped)).rejects.toThrow(/no key/);
  });

  it('answers like SPIRE: INVALID_ARGUMENT without audience or with pid, empty list when nothing matches', async () => {
    const { client } = await setup();
    await expect(fetchJwt(client, { audience: [], selectors: k8s('ns:default') })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('audience'),
    });
    await expect(fetchJwt(client, { audience: ['api'], pid: 42 })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(fetchJwt(client, { audience: ['api'], selectors: k8s('ns:default'), pid: 42 })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    await expect(fetchJwt(client, { audience: ['api'] })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    expect((await fetchJwt(client, { audience: ['api'], selectors: k8s('ns:other') })).svids).toEqual([]);
  });

  it('refuses callers that are not delegates, and ends JWT bundle streams when it stops answering', async () => {
    const { fixture, client } = await setup();
    const bundles = record(client.SubscribeToJWTBundles({}));
    await waitFor(() => bundles.messages.length > 0, { message: 'the first JWT bundles' });
    await fixture.agent.setDenyAll(true);
    await waitFor(() => bundles.status !== null, { message: 'the stream to end' });
    expect(bundles.status!.code).toBe(status.PERMISSION_DENIED);
    await expect(fetchJwt(client, { audience: ['api'], selectors: k8s('ns:default') })).rejects.toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    const denied = record(client.SubscribeToJWTBundles({}));
    await waitFor(() => denied.status !== null, { message: 'the refused stream to end' });
    expect(denied.status!.code).toBe(status.PERMISSION_DENIED);

    await fixture.agent.setDenyAll(false);
    const again = record(client.SubscribeToJWTBundles({}));
    await waitFor(() => again.messages.length > 0, { message: 'JWT bundles after allowing again' });
    await fixture.agent.setAnswering(false);
    await waitFor(() => again.status !== null, { message: 'the stream to end when the agent goes down' });
    expect(again.status!.code).toBe(status.UNAVAILABLE);
  });

  it('takes the JWT-SVID lifetime from --jwt-svid-ttl (default 5m) and from setJwtSvidTtl', async () => {
    const base = ['--socket', '/run/a.sock', '--trust-domain', 'example.org', '--registrations', '/r.json'];
    expect(parseDevAgentArgs(base, {})).toMatchObject({ jwtSvidTtlMs: 300_000 });
    expect(parseDevAgentArgs([...base, '--jwt-svid-ttl', '30s'], {})).toMatchObject({ jwtSvidTtlMs: 30_000 });
    expect(() => parseDevAgentArgs([...base, '--jwt-svid-ttl', '10ms'], {})).toThrow(/--jwt-svid-ttl must be at least 1s/);

    const { fixture, client } = await setup();
    fixture.agent.setJwtSvidTtl(7_000);
    const svid = (await fetchJwt(client, { audience: ['api'], selectors: k8s('ns:default') })).svids[0]!;
    expect(Number(svid.expires_at) - Number(svid.issued_at)).toBe(7);
    expect(() => fixture.agent.setJwtSvidTtl(10)).toThrow(RangeError);
  });
});
