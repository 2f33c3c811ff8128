import { rm } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../sdk/src/logger.js';
import { SourceError } from '../../sdk/src/source/errors.js';
import type { JwtMaterial } from '../../sdk/src/source/jwt-files.js';
import { JwtSource, type JwtSourceOptions } from '../../sdk/src/source/jwt-source.js';
import { validateJwtSvid } from '../../sdk/src/jwt/validate.js';
import { TrustDomain } from '../../sdk/src/spiffeid/trust-domain.js';
import { CredentialFolder, type WriteMode } from '../helpers/credential-folder.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait-for.js';
import { createIssuer, jwksOf, mintJwtSvid, nowSeconds, type Issuer } from './jwt-fixtures.js';

const TOKEN = 'jwt-svid.token';
const BUNDLE = 'example.org.jwt-bundle.json';
const PARTNER_BUNDLE = 'partner.test.jwt-bundle.json';

let ec: Issuer;
let ec2: Issuer;
let partner: Issuer;
const roots: string[] = [];
const sources: JwtSource[] = [];

beforeAll(async () => {
  ec = await createIssuer('example.org', 'ec-1');
  ec2 = await createIssuer('example.org', 'ec-2');
  partner = await createIssuer('partner.test', 'p-1', 'RS256');
});

afterEach(async () => {
  await Promise.all(sources.splice(0).map((source) => source.close()));
  await Promise.all(roots.splice(0).map((root) => rm(root, { recursive: true, force: true })));
});

async function newFolder(mode: WriteMode = 'atomic'): Promise<CredentialFolder> {
  const { folder, root } = await CredentialFolder.create(mode);
  roots.push(root);
  return folder;
}

interface Recorded {
  source: JwtSource;
  updates: JwtMaterial[];
  errors: SourceError[];
}

function open(folder: string, options: JwtSourceOptions = {}, listenErrors = true): Recorded {
  const source = new JwtSource(folder, { debounceMs: 10, recheckIntervalMs: 600_000, readRetryDelayMs: 5, ...options });
  sources.push(source);
  const recorded: Recorded = { source, updates: [], errors: [] };
  source.on('update', (m) => recorded.updates.push(m));
  if (listenErrors) source.on('error', (e) => recorded.errors.push(e));
  return recorded;
}

async function driverFiles(token: string, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    [TOKEN]: `${token}\n`,
    [BUNDLE]: jwksOf(ec, ec2),
    [PARTNER_BUNDLE]: jwksOf(partner),
    // X.509 files of the same payload are not this source's business.
    'svid.pem': 'not read by JwtSource',
    ...extra,
  };
}

describe('JwtSource', () => {
  it('loads the token and the per-trust-domain JWT bundles', async () => {
    const folder = await newFolder();
    const exp = nowSeconds() + 600;
    const token = await mintJwtSvid(ec, { aud: ['api'], exp });
    await folder.write(await driverFiles(token));
    const { source, updates } = open(folder.path);
    const material = await source.ready();
    expect(material.svid?.token).toBe(token);
    const current = source.current();
    expect(current.id.toString()).toBe('spiffe://example.org/workload');
    expect(current.audience).toEqual(['api']);
    expect(current.expiresAt).toEqual(new Date(exp * 1000));
    expect(source.getToken()).toBe(token);
    expect(source.getToken('api')).toBe(token);
    expect(source.getJwtSvid('api')).toBe(current);
    expect(() => source.getToken('billing')).toThrow(SourceError);
    expect(() => source.getToken('billing')).toThrow(/no JWT-SVID for audience "billing" in .*: jwt-svid\.token is for \["api"\]/);
    expect(source.getJwtBundles().trustDomains().map((td) => td.name).sort()).toEqual(['example.org', 'partner.test']);
    expect(source.getJwtBundleForTrustDomain(TrustDomain.parse('partner.test'))?.keyIds()).toEqual(['p-1']);
    expect(updates).toHaveLength(1);
    // The token never shows up when the material is logged or serialized.
    expect(JSON.stringify(current)).not.toContain(token);
    expect(JSON.stringify(material)).not.toContain(token);
  });

  it('serves as the bundle source for validation', async () => {
    const folder = await newFolder();
    await folder.write(await driverFiles(await mintJwtSvid(ec)));
    const { source } = open(folder.path);
    await source.ready();
    const incoming = await mintJwtSvid(partner, { aud: 'api' });
    await expect(validateJwtSvid(incoming, { audience: 'api', bundles: source })).resolves.toMatchObject({ audience: ['api'] });
  });

  it('picks up a refreshed token written with a ..data swap', async () => {
    const folder = await newFolder();
    const first = await mintJwtSvid(ec, { exp: nowSeconds() + 300 });
    await folder.write(await driverFiles(first));
    const { source, updates } = open(folder.path);
    await source.ready();
    const second = await mintJwtSvid(ec2, { exp: nowSeconds() + 900 });
    await folder.write(await driverFiles(second));
    await waitFor(() => updates.length === 2, { message: 'the refreshed token' });
    expect(source.getToken()).toBe(second);
    expect(updates[1]!.svid?.token).toBe(second);
  });

  it('announces a bundle change even when the token stays the same', async () => {
    const folder = await newFolder();
    const token = await mintJwtSvid(ec);
    await folder.write(await driverFiles(token));
    const { source, updates } = open(folder.path);
    await source.ready();
    await folder.write({ ...(await driverFiles(token)), [BUNDLE]: jwksOf(ec) });
    await waitFor(() => updates.length === 2, { message: 'the bundle update' });
    expect(source.getJwtBundles().get('example.org')!.keyIds()).toEqual(['ec-1']);
    expect(source.getToken()).toBe(token);
  });

  it('ignores an expired token and keeps the good one', async () => {
    const folder = await newFolder();
    const good = await mintJwtSvid(ec);
    await folder.write(await driverFiles(good));
    const { source, updates, errors } = open(folder.path);
    await source.ready();
    await folder.write(await driverFiles(await mintJwtSvid(ec, { exp: nowSeconds() - 60 })));
    const error = await waitFor(() => errors[0], { message: 'the expired token to be reported' });
    expect(error.kind).toBe('expired');
    expect(error.message).toMatch(/^jwtsource: JWT-SVID spiffe:\/\/example.org\/workload in jwt-svid.token expired at/);
    expect(source.getToken()).toBe(good);
    expect(updates).toHaveLength(1);

    // A valid token after the bad one is taken as usual.
    const next = await mintJwtSvid(ec2);
    await folder.write(await driverFiles(next));
    await waitFor(() => updates.length === 2, { message: 'the next good token' });
    expect(source.getToken()).toBe(next);
  });

  it('keeps the current material on a garbled token or bundle, and warns when nobody listens for errors', async () => {
    const folder = await newFolder();
    const good = await mintJwtSvid(ec);
    await folder.write(await driverFiles(good));
    const warnings: string[] = [];
    const logger: Logger = { debug() {}, info() {}, error() {}, warn: (obj) => warnings.push(String((obj as { error?: unknown }).error)) };
    const { source } = open(folder.path, { logger }, false);
    await source.ready();
    await folder.write(await driverFiles('not.a-token'));
    await waitFor(() => warnings.length >= 1, { message: 'a warning for the garbled token' });
    expect(warnings[0]).toMatch(/^jwtsource: jwt-svid.token: jwtsvid: /);
    await folder.write({ ...(await driverFiles(good)), [BUNDLE]: '{"keys": [' });
    await waitFor(() => warnings.length >= 2, { message: 'a warning for the garbled bundle' });
    expect(warnings[1]).toMatch(/example.org.jwt-bundle.json: jwtbundle: bundle for "example.org" is not valid JSON/);
    expect(source.getToken()).toBe(good);
    expect(source.getJwtBundles().get('example.org')!.keyIds().sort()).toEqual(['ec-1', 'ec-2']);
    expect(warnings.join('\n')).not.toContain(good);
  });

  it('reads plain files and a custom token file name', async () => {
    const folder = await newFolder('plain');
    const token = await mintJwtSvid(ec);
    await folder.write({ 'token.jwt': token, [BUNDLE]: jwksOf(ec) });
    const { source, updates } = open(folder.path, { tokenFile: 'token.jwt' });
    await source.ready();
    expect(source.getToken()).toBe(token);
    const next = await mintJwtSvid(ec2);
    await folder.write({ 'token.jwt': next, [BUNDLE]: jwksOf(ec) });
    await waitFor(() => updates.length === 2, { message: 'the rewritten token' });
    expect(source.getToken()).toBe(next);
  });

  it('with requireToken: false becomes ready on bundles alone', async () => {
    const folder = await newFolder();
    await folder.write({ [BUNDLE]: jwksOf(ec) });
    const { source } = open(folder.path, { requireToken: false });
    const material = await source.ready();
    expect(material.svid).toBeNull();
    expect(material.bundles.has('example.org')).toBe(true);
    expect(() => source.current()).toThrow(/no JWT-SVID file jwt-svid.token/);
  });

  it('does not become ready with an expired token, and says why', async () => {
    const folder = await newFolder();
    await folder.write(await driverFiles(await mintJwtSvid(ec, { exp: nowSeconds() - 60 })));
    const clock = new FakeClock(Date.now());
    const { source } = open(folder.path, { watch: false, clock });
    const pending = source.ready(300).catch((e: unknown) => e);
    await clock.advance(300);
    const err = await pending;
    expect(err).toBeInstanceOf(SourceError);
    expect((err as SourceError).kind).toBe('timeout');
    expect((err as SourceError).message).toMatch(/expired at/);
    expect(() => source.current()).toThrow(/not-ready|no JWT-SVID material loaded yet/);
    expect(source.getJwtBundleForTrustDomain(TrustDomain.parse('example.org'))).toBeUndefined();
  });

  it('judges expiry by its clock, and logs once when a token expires without a replacement', async () => {
    const folder = await newFolder();
    const exp = nowSeconds() + 600;
    const token = await mintJwtSvid(ec, { exp });
    await folder.write(await driverFiles(token));
    const logged: { level: string; msg: string | undefined }[] = [];
    const log = (level: string) => (_obj: object, msg?: string) => logged.push({ level, msg });
    const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
    const clock = new FakeClock(Date.now());
    const { source, errors } = open(folder.path, { watch: false, clock, logger });
    await source.ready();

    await clock.advance(exp * 1000 - clock.nowMs);
    expect(logged.filter((entry) => entry.level === 'error')).toEqual([]);
    await clock.advance(1);
    expect(logged.filter((entry) => entry.level === 'error').map((entry) => entry.msg)).toEqual([
      `jwtsource: the JWT-SVID in jwt-svid.token expired and no newer one arrived in ${folder.path}`,
    ]);
    await clock.advance(3_600_000);
    expect(logged.filter((entry) => entry.level === 'error')).toHaveLength(1);
    // The token already held keeps being served; a re-read of the same bytes is no news.
    expect(source.getToken()).toBe(token);
    expect(errors).toEqual([]);

    // A different token that is already expired by this clock is refused.
    await folder.write(await driverFiles(await mintJwtSvid(ec2, { exp })));
    await source.refresh();
    expect(errors.map((e) => e.kind)).toEqual(['expired']);
  });

  it('close() is idempotent and rejects pending ready() calls', async () => {
    const folder = await newFolder();
    const { source } = open(folder.path);
    const pending = source.ready();
    const closing = source.close();
    expect(source.close()).toBe(closing);
    await closing;
    await expect(pending).rejects.toMatchObject({ kind: 'closed' });
    await expect(source.ready()).rejects.toMatchObject({ kind: 'closed' });
  });

  it('rejects bad options', () => {
    expect(() => new JwtSource('/tmp', { tokenFile: '../x' })).toThrow(/plain file name/);
    expect(() => new JwtSource(undefined, { env: {} })).toThrow(/^jwtsource: no credential folder/);
    expect(() => new JwtSource('/tmp', { watch: false, recheckIntervalMs: 0 })).toThrow(/recheckIntervalMs/);
  });
});

/**
 * #13 finding 1: a token minted for several audiences can be replayed by any of them to the
 * others. The driver writes one token per audience (`jwt-svid.<audience>.token`), and getToken()
 * never hands out a token whose `aud` is anything but the one audience asked for.
 */
describe('JwtSource: one JWT-SVID per audience', () => {
  it('refuses a multi-audience token in jwt-svid.token for every one of its audiences', async () => {
    const folder = await newFolder();
    await folder.write(await driverFiles(await mintJwtSvid(ec, { aud: ['api', 'billing'] })));
    const { source } = open(folder.path);
    await source.ready();
    for (const audience of ['api', 'billing']) {
      let caught: unknown;
      try {
        source.getToken(audience);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SourceError);
      expect((caught as SourceError).kind).toBe('audience');
      expect((caught as SourceError).message).toContain(`audience "${audience}"`);
    }
    expect(() => source.getToken()).toThrow(/several audiences/);
  });

  it('serves the token of jwt-svid.token only when its aud is exactly the audience asked for', async () => {
    const folder = await newFolder();
    const single = await mintJwtSvid(ec, { aud: ['api'] });
    await folder.write(await driverFiles(single));
    const { source } = open(folder.path);
    await source.ready();
    expect(source.getToken('api')).toBe(single);
    expect(source.getToken()).toBe(single);
    expect(() => source.getToken('billing')).toThrow(/no JWT-SVID for audience "billing"/);

    // A string aud is the same as a one-element array.
    const asString = await mintJwtSvid(ec2, { aud: 'api' });
    await folder.write(await driverFiles(asString));
    await source.refresh();
    expect(source.getToken('api')).toBe(asString);
  });

  it('serves per-audience files, each for its own audience only', async () => {
    const folder = await newFolder();
    const api = await mintJwtSvid(ec, { aud: ['api'] });
    const billing = await mintJwtSvid(ec, { aud: 'billing' });
    const odd = 'https://api.example.com/v1';
    const oddToken = await mintJwtSvid(ec, { aud: [odd] });
    const unicode = 'bücher ☃';
    const unicodeToken = await mintJwtSvid(ec2, { aud: [unicode] });
    await folder.write({
      'jwt-svid.api.token': `${api}\n`,
      'jwt-svid.billing.token': billing,
      'jwt-svid.https%3A%2F%2Fapi.example.com%2Fv1.token': oddToken,
      'jwt-svid.b%C3%BCcher%20%E2%98%83.token': unicodeToken,
      [BUNDLE]: jwksOf(ec, ec2),
    });
    const { source, updates } = open(folder.path);
    await source.ready();
    expect(source.getToken('api')).toBe(api);
    expect(source.getToken('billing')).toBe(billing);
    expect(source.getToken(odd)).toBe(oddToken);
    expect(source.getToken(unicode)).toBe(unicodeToken);
    expect(() => source.getToken('vault')).toThrow(/no JWT-SVID for audience "vault"/);
    // Several tokens and no audience named: which one would be a guess.
    expect(() => source.getToken()).toThrow(/several audiences/);

    // A refresh of one audience's token is picked up like any other update.
    const apiNext = await mintJwtSvid(ec2, { aud: ['api'] });
    await folder.write({
      'jwt-svid.api.token': apiNext,
      'jwt-svid.billing.token': billing,
      [BUNDLE]: jwksOf(ec, ec2),
    });
    await source.refresh();
    expect(updates).toHaveLength(2);
    expect(source.getToken('api')).toBe(apiNext);
    expect(() => source.getToken(odd)).toThrow(/no JWT-SVID for audience/);
  });

  it('a token that expired in place does not hold back the refresh of the others', async () => {
    const folder = await newFolder();
    const start = nowSeconds();
    const api = await mintJwtSvid(ec, { aud: 'api', exp: start + 600 });
    const billing = await mintJwtSvid(ec, { aud: 'billing', exp: start + 900 });
    await folder.write({ 'jwt-svid.api.token': api, 'jwt-svid.billing.token': billing, [BUNDLE]: jwksOf(ec) });
    const clock = new FakeClock(start * 1000);
    const { source, errors } = open(folder.path, { watch: false, clock });
    await source.ready();

    // api's refresh keeps failing on the driver side; its token expires where it is.
    await clock.advance(601_000);
    const billingNext = await mintJwtSvid(ec, { aud: 'billing', exp: start + 3600 });
    await folder.write({ 'jwt-svid.api.token': api, 'jwt-svid.billing.token': billingNext, [BUNDLE]: jwksOf(ec, ec2) });
    await source.refresh();
    expect(errors).toEqual([]);
    expect(source.getToken('billing')).toBe(billingNext);
    expect(source.getToken('api')).toBe(api);
    expect(source.getJwtBundles().get('example.org')!.keyIds().sort()).toEqual(['ec-1', 'ec-2']);

    // A token that is new and already expired is still refused.
    const staleApi = await mintJwtSvid(ec2, { aud: 'api', exp: start + 300 });
    await folder.write({ 'jwt-svid.api.token': staleApi, 'jwt-svid.billing.token': billingNext, [BUNDLE]: jwksOf(ec, ec2) });
    await source.refresh();
    expect(errors.map((e) => e.kind)).toEqual(['expired']);
    expect(errors[0]!.message).toMatch(/in jwt-svid\.api\.token expired at/);
    expect(source.getToken('api')).toBe(api);
  });

  it('refuses an update whose per-audience file holds a token for other audiences', async () => {
    const folder = await newFolder();
    const api = await mintJwtSvid(ec, { aud: ['api'] });
    await folder.write({ 'jwt-svid.api.token': api, [BUNDLE]: jwksOf(ec) });
    const { source, errors } = open(folder.path);
    await source.ready();
    await folder.write({ 'jwt-svid.api.token': await mintJwtSvid(ec, { aud: ['api', 'billing'] }), [BUNDLE]: jwksOf(ec) });
    await source.refresh();
    expect(errors.map((e) => e.kind)).toEqual(['invalid']);
    expect(errors[0]!.message).toMatch(/jwt-svid\.api\.token: .*\["api","billing"\].*exactly \["api"\]/);
    expect(source.getToken('api')).toBe(api);
  });
});
