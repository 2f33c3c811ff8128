import { status } from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { AgentError, type AgentJwtSvid, type AgentX509Svid, type BundleUpdate } from '../../driver/src/identity/identity-backend.js';
import { AgentJwtError, checkAgentJwtSvid, chooseJwtSvid, type CheckedJwtSvid } from '../../driver/src/session/agent-jwt.js';
import { JwtRefresher, jwtRefreshDelayMs, type JwtFailure } from '../../driver/src/session/jwt-refresher.js';
import { buildPayload, KEY_MODE_GROUP, KEY_MODE_OWNER_ONLY, PUBLIC_MODE } from '../../driver/src/storage/payload.js';
import { jwtSvidFilesOf, type VolumeJwtState } from '../../driver/src/volume/volume-state.js';
import { DEFAULT_LAYOUT_OPTIONS, DEFAULT_FILES, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { TestCa } from '../helpers/test-ca.js';
import { DelegatedBackend } from '../../driver/src/identity/delegated/delegated-backend.js';
import { FakeIdentityProvider } from './fake-identity-provider.js';
import { waitFor } from '../helpers/wait-for.js';
import { FakeClock, TestJwtIssuer } from './jwt-fixtures.js';

const NOW = new Date('2030-01-01T00:00:00Z');
const WEB = 'spiffe://example.org/web';
const POD = { name: 'web', namespace: 'default', uid: 'pod-1', serviceAccount: 'web' };
const spec = (overrides: Partial<VolumeSpec> = {}): VolumeSpec => ({
  volumeId: 'csi-1',
  targetPath: '/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/spiffe/mount',
  pod: { name: 'web', namespace: 'default', uid: 'u', serviceAccount: 'web' },
  files: DEFAULT_FILES,
  bundleIncludeFederated: false,
  fsGroup: null,
  spiffeId: null,
  jwtAudiences: ['api'],
  jwtSvidFile: 'jwt-svid.token',
  ...DEFAULT_LAYOUT_OPTIONS,
  ...overrides,
});

describe('JWT payload', () => {
  let svid: AgentX509Svid;
  let bundles: BundleUpdate;
  let own: TestJwtIssuer;
  let partner: TestJwtIssuer;
  let token: AgentJwtSvid;
  let jwt: VolumeJwtState;

  beforeAll(async () => {
    const ca = await TestCa.create('example.org');
    const fed = await TestCa.create('partner.test');
    const minted = await ca.mint(WEB, { notBefore: new Date('2029-12-31T00:00:00Z'), notAfter: new Date('2030-01-02T00:00:00Z') });
    svid = { spiffeId: WEB, chainDer: minted.chainDer, keyDer: minted.keyDer, hint: '' };
    bundles = new Map([
      ['example.org', ca.rootDer],
      ['partner.test', fed.rootDer],
    ]);
    own = await TestJwtIssuer.create('example.org');
    partner = await TestJwtIssuer.create('partner.test');
    token = await own.mint(WEB, { audiences: ['api'], issuedAt: NOW, expiresAt: new Date(NOW.getTime() + 300_000) });
    jwt = {
      tokens: [{ audience: 'api', token: token.token, spiffeId: WEB, expiresAt: new Date(NOW.getTime() + 300_000) }],
      bundles: new Map([
        ['example.org', own.jwks()],
        ['partner.test', partner.jwks()],
        ['unrelated.test', partner.jwks()],
      ]),
    };
  });

  it('adds the token (key mode) and one JWT bundle per trust domain the pod may talk to (bytes as received)', () => {
    const { files, identity } = buildPayload({ spec: spec(), svid, bundles, federatesWith: ['partner.test'], jwt, now: NOW });
    expect(files.get('jwt-svid.token')).toEqual({ data: token.token, mode: KEY_MODE_OWNER_ONLY });
    expect(files.get('example.org.jwt-bundle.json')).toEqual({ data: own.jwks(), mode: PUBLIC_MODE });
    expect(files.get('partner.test.jwt-bundle.json')).toEqual({ data: partner.jwks(), mode: PUBLIC_MODE });
    expect(files.has('unrelated.test.jwt-bundle.json')).toBe(false);
    // The X.509 files are still all there, in the same payload.
    expect(files.has('credential-bundle.private-key.x509.pem')).toBe(true);
    expect(files.has('example.org.spiffe-trust-bundle.x509.pem')).toBe(true);

    expect(identity).toMatchObject({
      jwtSpiffeId: WEB,
      jwtAudiences: ['api'],
      jwtExpiresAt: '2030-01-01T00:05:00.000Z',
      jwtSvidFiles: { api: 'jwt-svid.token' },
      jwtTrustDomains: ['example.org', 'partner.test'],
    });
    const json = String(files.get('identity.json')!.data);
    expect(JSON.parse(json)).toMatchObject({ jwtAudiences: ['api'], jwtExpiresAt: '2030-01-01T00:05:00.000Z' });
    expect(json).not.toContain(token.token);
    expect(json).not.toContain(token.token.split('.')[2]!);
  });

  it('makes the token group-readable with an fsGroup, under the chosen file name', () => {
    const { files } = buildPayload({ spec: spec({ fsGroup: 2000, jwtSvidFile: 'token' }), svid, bundles, federatesWith: [], jwt, now: NOW });
    expect(files.get('token')?.mode).toBe(KEY_MODE_GROUP);
    expect(files.has('jwt-svid.token')).toBe(false);
    expect(files.has('partner.test.jwt-bundle.json')).toBe(false);
  });

  it('writes nothing JWT-related without JWT state, and identity.json has no JWT fields', () => {
    const { files, identity } = buildPayload({ spec: spec({ jwtAudiences: [] }), svid, bundles, federatesWith: [], now: NOW });
    expect([...files.keys()].filter((name) => name.includes('jwt'))).toEqual([]);
    expect(Object.keys(identity).filter((key) => key.startsWith('jwt'))).toEqual([]);
  });

  // JWKS documents are checked where they enter (identity/delegated/wire.ts and its tests).
  it('refuses a payload without the JWT bundle of the token\'s trust domain', () => {
    const missing = { ...jwt, bundles: new Map([['partner.test', partner.jwks()]]) };
    expect(() => buildPayload({ spec: spec(), svid, bundles, federatesWith: [], jwt: missing, now: NOW })).toThrow(/no JWT bundle for example.org/);
  });

  it('refuses a token file name that collides with another file', () => {
    expect(() => buildPayload({ spec: spec({ jwtSvidFile: 'svid.pem' }), svid, bundles, federatesWith: [], jwt, now: NOW })).toThrow(/used twice/);
  });

  describe('with several audiences', () => {
    const URL_AUDIENCE = 'https://x.example/v1';
    let tokens: Record<string, AgentJwtSvid>;
    let several: VolumeJwtState;

    beforeAll(async () => {
      tokens = {
        api: await own.mint(WEB, { audiences: ['api'], issuedAt: NOW, expiresAt: new Date(NOW.getTime() + 300_000) }),
        [URL_AUDIENCE]: await own.mint(WEB, { audiences: [URL_AUDIENCE], issuedAt: NOW, expiresAt: new Date(NOW.getTime() + 120_000) }),
      };
      several = {
        tokens: [
          { audience: 'api', token: tokens.api!.token, spiffeId: WEB, expiresAt: new Date(NOW.getTime() + 300_000) },
          { audience: URL_AUDIENCE, token: tokens[URL_AUDIENCE]!.token, spiffeId: WEB, expiresAt: new Date(NOW.getTime() + 120_000) },
        ],
        bundles: jwt.bundles,
      };
    });

    it('writes each audience\'s own token to jwt-svid.<encoded audience>.token (key mode) and no jwt-svid.token', () => {
      const { files, identity } = buildPayload({
        spec: spec({ fsGroup: 2000, jwtAudiences: ['api', URL_AUDIENCE] }),
        svid,
        bundles,
        federatesWith: [],
        jwt: several,
        now: NOW,
      });
      expect(files.get('jwt-svid.api.token')).toEqual({ data: tokens.api!.token, mode: KEY_MODE_GROUP });
      expect(files.get('jwt-svid.https%3A%2F%2Fx.example%2Fv1.token')).toEqual({ data: tokens[URL_AUDIENCE]!.token, mode: KEY_MODE_GROUP });
      expect(files.has('jwt-svid.token')).toBe(false);
      expect([...files.keys()].filter((name) => name.endsWith('.token')).sort()).toEqual([
        'jwt-svid.api.token',
        'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token',
      ]);
      expect(files.get('example.org.jwt-bundle.json')).toEqual({ data: own.jwks(), mode: PUBLIC_MODE });
      // identity.json keeps its JWT facts: every audience, the earliest expiry, and where each token is.
      expect(identity).toMatchObject({
        jwtSpiffeId: WEB,
        jwtAudiences: ['api', URL_AUDIENCE],
        jwtExpiresAt: '2030-01-01T00:02:00.000Z',
        jwtSvidFiles: { api: 'jwt-svid.api.token', [URL_AUDIENCE]: 'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token' },
      });
      const json = String(files.get('identity.json')!.data);
      for (const minted of Object.values(tokens)) expect(json).not.toContain(minted.token.split('.')[2]!);
    });

    it('ignores a jwt-svid-file an older record still carries: the names are per audience', () => {
      const { files } = buildPayload({
        spec: spec({ jwtAudiences: ['api', URL_AUDIENCE], jwtSvidFile: 'token.jwt' }),
        svid,
        bundles,
        federatesWith: [],
        jwt: several,
        now: NOW,
      });
      expect(files.has('token.jwt')).toBe(false);
      expect(files.get('jwt-svid.api.token')?.mode).toBe(KEY_MODE_OWNER_ONLY);
    });

    it('names the files with the layout rule, one to one', () => {
      expect([...jwtSvidFilesOf({ jwtAudiences: ['api'], jwtSvidFile: 'token.jwt' })]).toEqual([['api', 'token.jwt']]);
      expect([...jwtSvidFilesOf({ jwtAudiences: ['a b', 'ä/%', 'ok.-_'], jwtSvidFile: 'jwt-svid.token' })]).toEqual([
        ['a b', 'jwt-svid.a%20b.token'],
        ['ä/%', 'jwt-svid.%C3%A4%2F%25.token'],
        ['ok.-_', 'jwt-svid.ok.-_.token'],
      ]);
      expect(jwtSvidFilesOf({ jwtAudiences: [], jwtSvidFile: 'jwt-svid.token' }).size).toBe(0);
    });

    it('refuses tokens that do not match the volume\'s audiences, or a split file taking an audience\'s file', () => {
      const input = { svid, bundles, federatesWith: [], now: NOW };
      expect(() => buildPayload({ ...input, spec: spec({ jwtAudiences: ['api', 'billing'] }), jwt: several })).toThrow(
        /JWT-SVIDs are for audiences \["api","https:\/\/x.example\/v1"\], but the volume asks for \["api","billing"\]/,
      );
      const one = { ...several, tokens: several.tokens.slice(0, 1) };
      expect(() => buildPayload({ ...input, spec: spec({ jwtAudiences: ['api', URL_AUDIENCE] }), jwt: one })).toThrow(/but the volume asks for/);
      const mixed = { ...several, tokens: [several.tokens[0]!, { ...several.tokens[1]!, spiffeId: 'spiffe://example.org/other' }] };
      expect(() => buildPayload({ ...input, spec: spec({ jwtAudiences: ['api', URL_AUDIENCE] }), jwt: mixed })).toThrow(/different SPIFFE IDs/);
      const clash = spec({ jwtAudiences: ['api', URL_AUDIENCE], files: { ...DEFAULT_FILES, svid: 'jwt-svid.api.token' } });
      expect(() => buildPayload({ ...input, spec: clash, jwt: several })).toThrow(/jwt-svid.api.token is used twice/);
    });
  });
});

describe('agent JWT-SVID checks', () => {
  let issuer: TestJwtIssuer;
  beforeAll(async () => {
    issuer = await TestJwtIssuer.create('example.org');
  });

  it('accepts a token whose sub, aud and exp fit, and reads exp from the token', async () => {
    const svid = await issuer.mint(WEB, { audiences: ['db'], issuedAt: NOW, expiresAt: new Date(NOW.getTime() + 60_000) });
    const checked = checkAgentJwtSvid(svid, 'db', NOW);
    expect(checked.spiffeId.toString()).toBe(WEB);
    expect(checked.expiresAt.toISOString()).toBe('2030-01-01T00:01:00.000Z');
    // `aud` as a single string is the same one audience.
    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const single = `${b64({ alg: 'ES256' })}.${b64({ sub: WEB, aud: 'db', exp: 4_000_000_000 })}.c2ln`;
    expect(checkAgentJwtSvid({ token: single, spiffeId: WEB, expiresAt: '0', issuedAt: '0', hint: '' }, 'db', NOW).spiffeId.toString()).toBe(WEB);
  });

  it.each([
    ['sub differs from the label', { labelledAs: 'spiffe://example.org/other' }, 'api', /sub "spiffe:\/\/example.org\/web", not the SPIFFE ID/],
    ['it lacks the audience', { audiences: ['other'] }, 'api', /has aud \["other"\], but it was fetched for exactly \["api"\]/],
    // A token that several audiences accept could be replayed by any of them to the others.
    ['it is also for another audience', { audiences: ['api', 'billing'] }, 'api', /has aud \["api","billing"\], but it was fetched for exactly \["api"\]/],
    ['it names its audience twice', { audiences: ['api', 'api'] }, 'api', /fetched for exactly \["api"\]/],
    ['it has expired', { expiresAt: new Date(NOW.getTime() - 1000), issuedAt: new Date(NOW.getTime() - 60_000) }, 'api', /expired at/],
  ])('rejects a token when %s', async (_what, options, audience, message) => {
    const svid = await issuer.mint(WEB, { issuedAt: NOW, ...options });
    let thrown: unknown;
    try {
      checkAgentJwtSvid(svid, audience, NOW);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(AgentJwtError);
    expect((thrown as Error).message).toMatch(message);
    expect((thrown as Error).message).not.toContain(svid.token);
  });

  it('rejects tokens that are not JWS compact or use a forbidden alg', () => {
    const base = { spiffeId: WEB, expiresAt: '0', issuedAt: '0', hint: '' };
    expect(() => checkAgentJwtSvid({ ...base, token: 'abc' }, 'api', NOW)).toThrow(/compact serialization/);
    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const unsigned = `${b64({ alg: 'none' })}.${b64({ sub: WEB, aud: ['api'], exp: 4_000_000_000 })}.`;
    expect(() => checkAgentJwtSvid({ ...base, token: unsigned }, 'api', NOW)).toThrow(/alg "none"/);
    const hs = `${b64({ alg: 'HS256' })}.${b64({ sub: WEB, aud: 'api', exp: 4_000_000_000 })}.c2ln`;
    expect(() => checkAgentJwtSvid({ ...base, token: hs }, 'api', NOW)).toThrow(/alg "HS256"/);
    const noExp = `${b64({ alg: 'ES256' })}.${b64({ sub: WEB, aud: 'api' })}.c2ln`;
    expect(() => checkAgentJwtSvid({ ...base, token: noExp }, 'api', NOW)).toThrow(/no exp claim/);
  });

  it('chooses by SPIFFE ID, else the first', async () => {
    const a = await issuer.mint('spiffe://example.org/a');
    const b = await issuer.mint('spiffe://example.org/b');
    expect(chooseJwtSvid([a, b], null)).toBe(a);
    expect(chooseJwtSvid([a, b], 'spiffe://example.org/b')).toBe(b);
    expect(chooseJwtSvid([a, b], 'spiffe://example.org/c')).toBeUndefined();
    expect(chooseJwtSvid([], null)).toBeUndefined();
  });

  it('chooses by hint, as the X.509-SVID is, so both name the same entry', async () => {
    const a = { ...(await issuer.mint('spiffe://example.org/a')), hint: 'internal' };
    const b = { ...(await issuer.mint('spiffe://example.org/a')), hint: 'external' };
    expect(chooseJwtSvid([a, b], null, 'external')).toBe(b);
    expect(chooseJwtSvid([a, b], 'spiffe://example.org/a', 'internal')).toBe(a);
    expect(chooseJwtSvid([a, b], 'spiffe://example.org/b', 'external')).toBeUndefined();
    expect(chooseJwtSvid([a, b], null, null)).toBe(a);
  });
});

describe('JWT refresh scheduling', () => {
  it('refreshes at half of the remaining lifetime, pulled earlier by at most 10 % jitter', () => {
    const exp = new Date(NOW.getTime() + 300_000);
    expect(jwtRefreshDelayMs(exp, NOW, () => 0)).toBe(150_000);
    expect(jwtRefreshDelayMs(exp, NOW, () => 0.999999)).toBe(135_000);
    expect(jwtRefreshDelayMs(exp, NOW, () => 0.5)).toBe(142_500);
    // Nearly expired: never a busy loop, never later than half the remaining time.
    expect(jwtRefreshDelayMs(new Date(NOW.getTime() + 1_500), NOW, () => 0.9)).toBe(750);
    expect(jwtRefreshDelayMs(new Date(NOW.getTime() + 3_000), NOW, () => 1)).toBe(1_350);
    expect(jwtRefreshDelayMs(new Date(NOW.getTime() - 1), NOW, () => 0)).toBe(0);
    expect(jwtRefreshDelayMs(new Date(NOW.getTime() + 10 * 365 * 86_400_000), NOW, () => 0)).toBe(2_147_483_647);
  });

  it('drives fetches with injected timers: refresh before expiry, backoff on errors, nothing after close', async () => {
    const clock = new FakeClock(NOW.getTime());
    const issuer = await TestJwtIssuer.create('example.org');
    const identity = new FakeIdentityProvider();
    let fail: AgentError | null = null;
    identity.respondJwt = async (_selectors, audiences) => {
      if (fail !== null) throw fail;
      return [await issuer.mint(WEB, { audiences, issuedAt: clock.now(), expiresAt: new Date(clock.nowMs + 60_000) })];
    };
    const tokens: CheckedJwtSvid[] = [];
    const failures: JwtFailure[] = [];
    const refresher = new JwtRefresher({
      identity: new DelegatedBackend(identity, { nodeName: 'node-1' }),
      pod: POD,
      audience: 'api',
      spiffeId: null,
      clock,
      random: () => 0,
      retry: { initialMs: 1_000, maxMs: 8_000, jitter: 'none' },
      onToken: (t) => tokens.push(t),
      onFailure: (f) => failures.push(f),
    });
    refresher.start();
    // Signing runs on libuv's thread pool: wait for outcomes rather than a fixed number of ticks.
    await waitFor(() => tokens.length === 1, { message: 'the first token' });
    expect(identity.jwtFetches[0]!.audiences).toEqual(['api']);
    expect(clock.pendingDelays()).toEqual([30_000]);

    await clock.fireNext();
    await waitFor(() => tokens.length === 2, { message: 'the refreshed token' });
    expect(tokens[1]!.svid.token).not.toBe(tokens[0]!.svid.token);
    expect(tokens[1]!.expiresAt.getTime()).toBe(NOW.getTime() + 90_000);

    fail = new AgentError(status.UNAVAILABLE, 'unavailable', 'spire: FetchJWTSVIDs: agent down');
    for (const [index, delay] of [30_000, 1_000, 2_000].entries()) {
      expect(await clock.fireNext()).toBe(delay);
      await waitFor(() => failures.length === index + 1, { message: `failure ${index + 1}` });
    }
    expect(failures.map((f) => f.retryInMs)).toEqual([1_000, 2_000, 4_000]);
    expect(failures[0]).toMatchObject({ invalid: false, agentError: fail });
    fail = null;
    await clock.fireNext();
    await waitFor(() => tokens.length === 3, { message: 'the token after recovery' });
    // Success resets the backoff and goes back to the half-life schedule.
    expect(clock.pendingDelays()).toEqual([30_000]);

    refresher.close();
    expect(clock.pendingDelays()).toEqual([]);
    const fetches = identity.jwtFetches.length;
    await clock.advance(600_000);
    expect(identity.jwtFetches).toHaveLength(fetches);
  });

  it('reports an unusable answer as invalid and an empty one as "no entry", and retries both', async () => {
    const clock = new FakeClock(NOW.getTime());
    const issuer = await TestJwtIssuer.create('example.org');
    const identity = new FakeIdentityProvider();
    const answers: AgentJwtSvid[][] = [[], [await issuer.mint(WEB, { audiences: ['other'], issuedAt: NOW })]];
    identity.respondJwt = () => answers.shift() ?? [];
    const failures: JwtFailure[] = [];
    const refresher = new JwtRefresher({
      identity: new DelegatedBackend(identity, { nodeName: 'node-1' }),
      pod: POD,
      audience: 'api',
      spiffeId: null,
      clock,
      random: () => 0,
      retry: { initialMs: 500, maxMs: 500, jitter: 'none' },
      onToken: () => {},
      onFailure: (f) => failures.push(f),
    });
    refresher.start();
    await waitFor(() => failures.length === 1, { message: 'the first failure' });
    await clock.fireNext();
    await waitFor(() => failures.length === 2, { message: 'the second failure' });
    refresher.close();
    expect(failures[0]).toMatchObject({ invalid: false, problem: expect.stringMatching(/no JWT-SVID for this pod/) });
    expect(failures[1]).toMatchObject({ audience: 'api', invalid: true, problem: expect.stringMatching(/has aud \["other"\], but it was fetched for exactly \["api"\]/) });
  });
});
