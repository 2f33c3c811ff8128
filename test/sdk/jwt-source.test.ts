import { rm } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../sdk/src/logger.js';
import { JwtSourceError } from '../../sdk/src/jwt/errors.js';
import type { JwtMaterial } from '../../sdk/src/jwt/jwt-files.js';
import { JwtSource, type JwtSourceOptions } from '../../sdk/src/jwt/jwt-source.js';
import { validateJwtSvid } from '../../sdk/src/jwt/validate.js';
import { TrustDomain } from '../../sdk/src/spiffe-id/trust-domain.js';
import { CredentialFolder, type WriteMode } from '../helpers/credential-folder.js';
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
  errors: JwtSourceError[];
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
    const token = await mintJwtSvid(ec, { aud: ['api', 'vault'], exp });
    await folder.write(await driverFiles(token));
    const { source, updates } = open(folder.path);
    const material = await source.ready();
    expect(material.svid?.token).toBe(token);
    const current = source.current();
    expect(current.id.toString()).toBe('spiffe://example.org/workload');
    expect(current.audience).toEqual(['api', 'vault']);
    expect(current.expiresAt).toEqual(new Date(exp * 1000));
    expect(source.getToken()).toBe(token);
    expect(source.getToken('vault')).toBe(token);
    expect(() => source.getToken('billing')).toThrow(JwtSourceError);
    expect(() => source.getToken('billing')).toThrow(/audience \["api","vault"\], not "billing"/);
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
    const { source } = open(folder.path);
    const err = await source.ready(300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JwtSourceError);
    expect((err as JwtSourceError).kind).toBe('timeout');
    expect((err as JwtSourceError).message).toMatch(/expired at/);
    expect(() => source.current()).toThrow(/not-ready|no JWT-SVID material loaded yet/);
    expect(source.getJwtBundleForTrustDomain(TrustDomain.parse('example.org'))).toBeUndefined();
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
