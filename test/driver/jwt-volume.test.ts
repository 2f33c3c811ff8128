import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentError, type AgentJwtSvid } from '../../driver/src/identity/identity-backend.js';
import type { Selector } from '../../driver/src/identity/delegated/selectors.js';
import type { RotatedEvent, VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import type { VolumeManager } from '../../driver/src/manager/volume-manager.js';
import type { VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { waitFor } from '../helpers/wait-for.js';
import { FakeClock, settle, TestJwtIssuer } from './jwt-fixtures.js';
import { dataDir, isRoot, modeOf, present, VolumeHarness } from './volume-harness.js';

const WEB = 'spiffe://example.org/web';
const TTL_MS = 300_000;

if (!isRoot) console.log('jwt-volume.test.ts: skipping: publishing mounts real tmpfs, which needs root (uid 0)');

describe.skipIf(!isRoot)('VolumeManager with JWT audiences', () => {
  let h: VolumeHarness;
  let clock: FakeClock;
  let issuer: TestJwtIssuer;
  let partner: TestJwtIssuer;
  let manager: VolumeManager;
  let issued: AgentJwtSvid[];
  let answer: (selectors: readonly Selector[], audiences: readonly string[]) => Promise<AgentJwtSvid[]>;
  let errors: VolumeErrorEvent[];
  let rotated: RotatedEvent[];

  const mint = async (audiences: readonly string[], sub = WEB): Promise<AgentJwtSvid> => {
    const svid = await issuer.mint(sub, { audiences, issuedAt: clock.now(), expiresAt: new Date(clock.nowMs + TTL_MS) });
    issued.push(svid);
    return svid;
  };
  const tokenOf = (spec: VolumeSpec, file = 'jwt-svid.token') => readFile(join(spec.targetPath, file), 'utf8');
  const identityOf = async (spec: VolumeSpec) => JSON.parse(await readFile(join(spec.targetPath, 'identity.json'), 'utf8')) as Record<string, unknown>;

  beforeEach(async () => {
    h = await VolumeHarness.create();
    // Real "now" (the X.509 test certificates are valid around it), moved by hand from there.
    clock = new FakeClock(Date.now());
    issuer = await TestJwtIssuer.create('example.org');
    partner = await TestJwtIssuer.create('partner.test');
    issued = [];
    answer = async (_selectors, audiences) => [await mint(audiences)];
    h.identity.respondJwt = (selectors, audiences) => answer(selectors, audiences);
    h.identity.setJwtBundles(new Map([['example.org', issuer.jwks()], ['partner.test', partner.jwks()], ['unrelated.test', partner.jwks()]]));
    manager = h.manager({ clock, random: () => 0, jwtRetry: { initialMs: 1_000, maxMs: 4_000, jitter: 'none' } });
    errors = [];
    rotated = [];
    manager.events.on('error', (e) => errors.push(e));
    manager.events.on('rotated', (e) => rotated.push(e));
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('publishes the token and per-trust-domain JWT bundles in the same payload, with key-like token modes', async () => {
    h.identity.respond = () => undefined;
    const update = await h.update(WEB, ['spiffe://partner.test']);
    h.identity.respond = () => update;
    const spec = await h.spec({ fsGroup: 2000, jwtAudiences: ['api'] });
    await manager.publish(spec);

    expect(h.identity.jwtFetches).toHaveLength(1);
    expect(h.identity.jwtFetches[0]!.audiences).toEqual(['api']);
    expect(h.identity.jwtFetches[0]!.selectors).toEqual(h.identity.openStreams[0]!.selectors);
    expect(await tokenOf(spec)).toBe(issued[0]!.token);
    expect(await modeOf(join(spec.targetPath, 'jwt-svid.token'))).toEqual({ mode: 0o440, uid: 0, gid: 2000 });
    expect(await readFile(join(spec.targetPath, 'example.org.jwt-bundle.json'))).toEqual(issuer.jwks());
    expect(await readFile(join(spec.targetPath, 'partner.test.jwt-bundle.json'))).toEqual(partner.jwks());
    expect((await modeOf(join(spec.targetPath, 'example.org.jwt-bundle.json'))).mode).toBe(0o444);
    expect(await present(join(spec.targetPath, 'unrelated.test.jwt-bundle.json'))).toBe(false);
    const identity = await identityOf(spec);
    expect(identity).toMatchObject({
      spiffeId: WEB,
      jwtSpiffeId: WEB,
      jwtAudiences: ['api'],
      jwtExpiresAt: new Date(Number(issued[0]!.expiresAt) * 1000).toISOString(),
      jwtSvidFiles: { api: 'jwt-svid.token' },
    });
    expect(JSON.stringify(identity)).not.toContain(issued[0]!.token);
  });

  it('with several audiences fetches one token per audience, each for that audience alone, into its own file', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ fsGroup: 2000, jwtAudiences: ['api', 'billing'] });
    await manager.publish(spec);

    // One FetchJWTSVIDs per audience: a token for both could be replayed by api to billing.
    expect(h.identity.jwtFetches.map((f) => f.audiences)).toEqual([['api'], ['billing']]);
    expect(await present(join(spec.targetPath, 'jwt-svid.token'))).toBe(false);
    for (const audience of ['api', 'billing']) {
      const file = join(spec.targetPath, `jwt-svid.${audience}.token`);
      const claims = decodeJwt(await readFile(file, 'utf8'));
      expect(claims.aud).toEqual([audience]);
      expect(claims.sub).toBe(WEB);
      expect(await modeOf(file)).toEqual({ mode: 0o440, uid: 0, gid: 2000 });
    }
    const identity = await identityOf(spec);
    expect(identity).toMatchObject({
      jwtSpiffeId: WEB,
      jwtAudiences: ['api', 'billing'],
      jwtSvidFiles: { api: 'jwt-svid.api.token', billing: 'jwt-svid.billing.token' },
    });
    for (const svid of issued) expect(JSON.stringify(identity)).not.toContain(svid.token);
  });

  it('percent-encodes audience characters outside [A-Za-z0-9._-] in the file names', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ jwtAudiences: ['https://x.example/v1', 'api'] });
    await manager.publish(spec);
    const token = await tokenOf(spec, 'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token');
    expect(decodeJwt(token).aud).toEqual(['https://x.example/v1']);
    expect(decodeJwt(await tokenOf(spec, 'jwt-svid.api.token')).aud).toEqual(['api']);
    expect((await readdir(spec.targetPath)).filter((name) => name.endsWith('.token')).sort()).toEqual([
      'jwt-svid.api.token',
      'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token',
    ]);
  });

  it('refreshing one audience\'s token writes a new generation holding every audience\'s current token', async () => {
    await h.serve(WEB);
    // billing's tokens live 1.5 times as long: api refreshes at ~150 s, billing at ~225 s, api at ~300 s.
    answer = async (_s, audiences) => {
      const ttl = audiences[0] === 'billing' ? 1.5 * TTL_MS : TTL_MS;
      const svid = await issuer.mint(WEB, { audiences, issuedAt: clock.now(), expiresAt: new Date(clock.nowMs + ttl) });
      issued.push(svid);
      return [svid];
    };
    const spec = await h.spec({ jwtAudiences: ['api', 'billing'] });
    await manager.publish(spec);
    const firstBilling = issued.find((svid) => decodeJwt(svid.token).aud?.[0] === 'billing')!;
    const [apiDelay, billingDelay] = clock.pendingDelays();
    expect(apiDelay).toBeGreaterThan(TTL_MS / 2 - 1_000);
    expect(apiDelay).toBeLessThanOrEqual(TTL_MS / 2);
    expect(billingDelay).toBeGreaterThan(0.75 * TTL_MS - 1_000);
    const dir = await dataDir(spec.targetPath);

    await clock.fireNext();
    await waitFor(async () => (await tokenOf(spec, 'jwt-svid.api.token')) === issued[2]?.token, { message: 'the refreshed api token on disk' });
    expect(h.identity.jwtFetches.map((f) => f.audiences)).toEqual([['api'], ['billing'], ['api']]);
    const next = await dataDir(spec.targetPath);
    expect(next).not.toBe(dir);
    // One generation: the new api token and billing's still current one, side by side behind ..data.
    const inGeneration = (file: string) => readFile(join(spec.targetPath, next, file), 'utf8');
    expect(await inGeneration('jwt-svid.api.token')).toBe(issued[2]!.token);
    expect(await inGeneration('jwt-svid.billing.token')).toBe(firstBilling.token);
    const identity = JSON.parse(await inGeneration('identity.json')) as Record<string, unknown>;
    // The earliest expiry of the tokens in this generation.
    expect(identity.jwtExpiresAt).toBe(new Date(Math.min(Number(issued[2]!.expiresAt), Number(firstBilling.expiresAt)) * 1000).toISOString());
    expect(rotated.map((e) => e.initial)).toEqual([true]);

    // billing's refresh comes next and again rewrites both.
    await clock.fireNext();
    await waitFor(async () => (await tokenOf(spec, 'jwt-svid.billing.token')) !== firstBilling.token, { message: 'the refreshed billing token' });
    const third = await dataDir(spec.targetPath);
    expect(third).not.toBe(next);
    expect(await readFile(join(spec.targetPath, third, 'jwt-svid.api.token'), 'utf8')).toBe(issued[2]!.token);
    expect(decodeJwt(await readFile(join(spec.targetPath, third, 'jwt-svid.billing.token'), 'utf8')).aud).toEqual(['billing']);
  });

  it('publishes only when every audience has a usable token', async () => {
    await h.serve(WEB);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    answer = async (_s, audiences) => {
      if (audiences[0] === 'billing') await gate;
      return [await mint(audiences)];
    };
    const spec = await h.spec({ jwtAudiences: ['api', 'billing'] });
    let done = false;
    const publishing = manager.publish(spec).then(() => (done = true));
    await waitFor(() => issued.length === 1 && h.identity.jwtFetches.length === 2, { message: 'the api token and both fetches' });
    await settle();
    expect(done).toBe(false);
    expect(await present(join(spec.targetPath, '..data'))).toBe(false);
    release();
    await publishing;
    expect(decodeJwt(await tokenOf(spec, 'jwt-svid.api.token')).aud).toEqual(['api']);
    expect(decodeJwt(await tokenOf(spec, 'jwt-svid.billing.token')).aud).toEqual(['billing']);
  });

  it('refuses a token for more audiences than it was fetched for, and names the audience when it times out', async () => {
    await h.serve(WEB);
    // An agent that answers every fetch with a token for both audiences: never written.
    answer = async () => [await mint(['api', 'billing'])];
    const timed = h.manager({ clock, publishTimeoutMs: 300 });
    timed.events.on('error', (e) => errors.push(e));
    const spec = await h.spec({ jwtAudiences: ['api', 'billing'] });
    const err = await expire(timed.publish(spec));
    expect(err).toMatchObject({ kind: 'not-ready' });
    expect((err as Error).message).toMatch(/no usable JWT-SVID arrived within 300ms/);
    expect((err as Error).message).toMatch(/audience "api": .*has aud \["api","billing"\], but it was fetched for exactly \["api"\]/);
    expect(errors.some((e) => e.kind === 'invalid-svid')).toBe(true);
    expect(await present(spec.targetPath)).toBe(false);
    const logged = JSON.stringify(h.logs);
    for (const svid of issued) expect(logged).not.toContain(svid.token.split('.')[2]!);
  });

  it('makes the token owner-only without an fsGroup, and honours jwt-svid-file', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ jwtAudiences: ['api'], jwtSvidFile: 'token.jwt' });
    await manager.publish(spec);
    expect(await modeOf(join(spec.targetPath, 'token.jwt'))).toEqual({ mode: 0o400, uid: 0, gid: 0 });
    expect(await present(join(spec.targetPath, 'jwt-svid.token'))).toBe(false);
  });

  it('fetches and writes nothing JWT-related without audiences', async () => {
    await h.serve(WEB);
    const spec = await h.spec();
    await manager.publish(spec);
    expect(h.identity.jwtFetches).toEqual([]);
    expect(h.identity.jwtBundleListenerCount).toBe(0);
    expect(await present(join(spec.targetPath, 'jwt-svid.token'))).toBe(false);
    expect(await present(join(spec.targetPath, 'example.org.jwt-bundle.json'))).toBe(false);
    expect(Object.keys(await identityOf(spec)).filter((k) => k.startsWith('jwt'))).toEqual([]);
    expect(clock.pendingDelays()).toEqual([]);
  });

  it('rewrites the token at half its remaining lifetime, before it expires, without counting an X.509 rotation', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ jwtAudiences: ['api'] });
    await manager.publish(spec);
    const first = issued[0]!;
    const dir = await dataDir(spec.targetPath);
    const [delay] = clock.pendingDelays();
    expect(delay).toBeGreaterThan(TTL_MS / 2 - 1_000);
    expect(delay).toBeLessThanOrEqual(TTL_MS / 2);

    await clock.fireNext();
    await waitFor(async () => (await tokenOf(spec)) === issued[1]?.token, { message: 'the refreshed token on disk' });
    expect(clock.nowMs).toBeLessThan(Number(first.expiresAt) * 1000);
    expect(await dataDir(spec.targetPath)).not.toBe(dir);
    expect((await identityOf(spec)).jwtExpiresAt).toBe(new Date(Number(issued[1]!.expiresAt) * 1000).toISOString());
    await waitFor(() => h.logs.some((l) => l.msg === 'JWT-SVID refreshed'), { message: 'the refresh log line' });
    expect(rotated.map((e) => e.initial)).toEqual([true]);
    // And again: the schedule keeps going.
    await clock.fireNext();
    await waitFor(async () => (await tokenOf(spec)) === issued[2]?.token, { message: 'the second refresh on disk' });
  });

  it('keeps the token when a refresh fails, retries with backoff, and never logs a token', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ jwtAudiences: ['api'] });
    await manager.publish(spec);
    const dir = await dataDir(spec.targetPath);
    answer = async () => {
      throw new AgentError(status.UNAVAILABLE, 'unavailable', 'spire: FetchJWTSVIDs: the SPIRE agent admin socket is unavailable');
    };
    await clock.fireNext();
    await waitFor(() => errors.some((e) => e.kind === 'agent-error'), { message: 'the fetch error event' });
    expect(clock.pendingDelays()).toEqual([1_000]);
    await clock.fireNext();
    await waitFor(() => clock.pendingDelays()[0] === 2_000, { message: 'the second retry scheduled' });
    expect(clock.pendingDelays()).toEqual([2_000]);
    expect(await dataDir(spec.targetPath)).toBe(dir);
    expect(await tokenOf(spec)).toBe(issued[0]!.token);
    expect(h.logs.some((l) => l.level === 'warn' && l.msg === 'JWT-SVID refresh failed; keeping the current token')).toBe(true);

    // An answer the driver must not publish (wrong subject) counts as invalid and changes nothing.
    answer = async (_s, audiences) => [await mint(audiences, 'spiffe://example.org/impostor').then((t) => ({ ...t, spiffeId: WEB }))];
    await clock.fireNext();
    await waitFor(() => errors.some((e) => e.kind === 'invalid-svid'), { message: 'the invalid token event' });
    expect(await tokenOf(spec)).toBe(issued[0]!.token);

    answer = async (_s, audiences) => [await mint(audiences)];
    await clock.fireNext();
    await waitFor(async () => (await tokenOf(spec)) === issued.at(-1)!.token, { message: 'the token after recovery' });
    const logged = JSON.stringify(h.logs);
    for (const svid of issued) {
      expect(logged).not.toContain(svid.token);
      expect(logged).not.toContain(svid.token.split('.')[2]!);
    }
  });

  it('publish waits for the JWT-SVID: no payload without it', async () => {
    await h.serve(WEB);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    answer = async (_s, audiences) => {
      await gate;
      return [await mint(audiences)];
    };
    const spec = await h.spec({ jwtAudiences: ['api'] });
    let done = false;
    const publishing = manager.publish(spec).then(() => (done = true));
    await waitFor(() => h.identity.jwtFetches.length === 1 && h.identity.openStreams.length === 1, { message: 'both requests' });
    await settle();
    expect(done).toBe(false);
    expect(await present(join(spec.targetPath, '..data'))).toBe(false);
    release();
    await publishing;
    expect(await tokenOf(spec)).toBe(issued[0]!.token);
  });

  /** Lets the 300 ms publish wait run out on the fake clock, once the wait has started. */
  async function expire(publishing: Promise<void>): Promise<unknown> {
    const outcome = publishing.then(
      () => undefined,
      (e: unknown) => e,
    );
    await waitFor(() => clock.pendingDelays().includes(300), { message: 'the publish wait armed' });
    await clock.advance(300);
    return outcome;
  }

  it('times out cleanly when the agent denies the JWT-SVID, saying so', async () => {
    await h.serve(WEB);
    answer = async () => {
      throw new AgentError(status.PERMISSION_DENIED, 'permission-denied', 'spire: FetchJWTSVIDs: not an authorized delegate');
    };
    const timed = h.manager({ clock, publishTimeoutMs: 300 });
    const spec = await h.spec({ jwtAudiences: ['api'] });
    const err = await expire(timed.publish(spec));
    expect(err).toMatchObject({ kind: 'not-ready' });
    expect((err as Error).message).toMatch(/no usable JWT-SVID arrived within 300ms/);
    expect((err as Error).message).toMatch(/PERMISSION_DENIED.*authorized_delegates/);
    expect(await present(spec.targetPath)).toBe(false);
    expect(await h.mountIds(spec.targetPath)).toEqual([]);
    expect(await h.store.get(spec.volumeId)).toBeUndefined();
    expect(clock.pendingDelays()).toEqual([]);
    expect(h.identity.jwtBundleListenerCount).toBe(0);
  });

  it('times out naming the problem when no entry gives a JWT-SVID or the JWT bundle is missing', async () => {
    await h.serve(WEB);
    const timed = h.manager({ clock, publishTimeoutMs: 300 });
    answer = async () => [];
    const noEntry = await expire(timed.publish(await h.spec({ jwtAudiences: ['api'] })));
    expect((noEntry as Error).message).toMatch(/no JWT-SVID for this pod/);

    answer = async (_s, audiences) => [await mint(audiences)];
    h.identity.setJwtBundles(new Map([['partner.test', partner.jwks()]]));
    const noBundle = await expire(timed.publish(await h.spec({ jwtAudiences: ['api'] })));
    expect((noBundle as Error).message).toMatch(/no JWT bundle for example.org yet/);
  });

  it('publishes the JWT-SVID of csi.spire.io/spiffe-id when several come back', async () => {
    await h.serve(WEB);
    answer = async (_s, audiences) => [await mint(audiences, 'spiffe://example.org/ns/default'), await mint(audiences)];
    const spec = await h.spec({ jwtAudiences: ['api'], spiffeId: WEB });
    await manager.publish(spec);
    expect(decodeJwt(await tokenOf(spec)).sub).toBe(WEB);
    const first = await h.spec({ jwtAudiences: ['api'] });
    await manager.publish(first);
    expect(decodeJwt(await tokenOf(first)).sub).toBe('spiffe://example.org/ns/default');
  });

  it('rewrites the JWT bundle file when the agent\'s JWT keys change, and stops everything on unpublish', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ jwtAudiences: ['api'] });
    await manager.publish(spec);
    const rotatedKeys = Buffer.from(JSON.stringify({ keys: [...JSON.parse(issuer.jwks().toString()).keys, { kty: 'EC', kid: 'next', use: 'jwt-svid' }] }));
    h.identity.setJwtBundles(new Map([['example.org', rotatedKeys]]));
    await waitFor(async () => (await readFile(join(spec.targetPath, 'example.org.jwt-bundle.json'))).equals(rotatedKeys), {
      message: 'the new JWT bundle on disk',
    });
    expect(h.identity.jwtFetches).toHaveLength(1);

    // An update that is not a JWKS is refused where it enters (the client's wire layer, as the fake
    // does), so the session never sees it and the good files stay.
    const dir = await dataDir(spec.targetPath);
    h.identity.setJwtBundles(new Map([['example.org', Buffer.from('nope')]]));
    await settle();
    expect(await dataDir(spec.targetPath)).toBe(dir);
    expect(await readFile(join(spec.targetPath, 'example.org.jwt-bundle.json'))).toEqual(rotatedKeys);

    await manager.unpublish(spec.volumeId, spec.targetPath);
    expect(clock.pendingDelays()).toEqual([]);
    expect(h.identity.jwtBundleListenerCount).toBe(0);
  });

  it('refetches the JWT-SVID when a volume is resumed after a restart', async () => {
    await h.serve(WEB);
    const spec = await h.spec({ jwtAudiences: ['api'] });
    await manager.publish(spec);
    await manager.shutdown();
    expect(clock.pendingDelays()).toEqual([]);
    const restarted = h.manager({ clock, random: () => 0 });
    expect(await restarted.resumeAll()).toMatchObject({ resumed: 1 });
    await waitFor(async () => (await tokenOf(spec)) === issued[1]?.token, { message: 'a fresh token after resuming' });
  });
});
