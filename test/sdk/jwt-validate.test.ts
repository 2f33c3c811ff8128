import { beforeAll, describe, expect, it } from 'vitest';
import { JwtError, type JwtErrorKind } from '../../sdk/src/jwt/errors.js';
import { JwtBundle } from '../../sdk/src/jwt/jwt-bundle.js';
import { JwtBundleSet } from '../../sdk/src/jwt/jwt-bundle-set.js';
import { parseJwtSvidInsecure } from '../../sdk/src/jwt/jwt-svid.js';
import { validateJwtSvid, type ValidateJwtSvidOptions } from '../../sdk/src/jwt/validate.js';
import { assemble, bundleOf, createIssuer, mintHs256, mintJwtSvid, nowSeconds, type Issuer } from './jwt-fixtures.js';

let ec: Issuer;
let rsa: Issuer;
let pss: Issuer;
let partner: Issuer;
let bundles: JwtBundleSet;

beforeAll(async () => {
  ec = await createIssuer('example.org', 'ec-1', 'ES256');
  rsa = await createIssuer('example.org', 'rsa-1', 'RS256');
  pss = await createIssuer('example.org', 'pss-1', 'PS384');
  partner = await createIssuer('partner.test', 'partner-1', 'ES384');
  bundles = new JwtBundleSet([bundleOf('example.org', ec, rsa, pss), bundleOf('partner.test', partner)]);
});

function options(extra: Partial<ValidateJwtSvidOptions> = {}): ValidateJwtSvidOptions {
  return { audience: 'api', bundles, ...extra };
}

async function expectRejected(token: string, kind: JwtErrorKind, message: RegExp, extra: Partial<ValidateJwtSvidOptions> = {}): Promise<void> {
  const err = await validateJwtSvid(token, options(extra)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(JwtError);
  expect((err as JwtError).kind).toBe(kind);
  expect((err as JwtError).message).toMatch(/^jwtsvid: /);
  expect((err as JwtError).message).toMatch(message);
  // The token is a credential: it must never end up in an error message.
  if (token.length > 20) expect((err as JwtError).message).not.toContain(token);
}

describe('validateJwtSvid accepts', () => {
  it('a valid ES256 token', async () => {
    const exp = nowSeconds() + 600;
    const token = await mintJwtSvid(ec, { exp, extra: { team: 'blue' } });
    const svid = await validateJwtSvid(token, options());
    expect(svid.id.toString()).toBe('spiffe://example.org/workload');
    expect(svid.audience).toEqual(['api']);
    expect(svid.expiresAt).toEqual(new Date(exp * 1000));
    expect(svid.claims.team).toBe('blue');
  });

  it('RS256 and PS384 tokens', async () => {
    await expect(validateJwtSvid(await mintJwtSvid(rsa), options())).resolves.toMatchObject({ audience: ['api'] });
    await expect(validateJwtSvid(await mintJwtSvid(pss), options())).resolves.toMatchObject({ audience: ['api'] });
  });

  it('a token from a federated trust domain, verified with that domain\'s keys', async () => {
    const svid = await validateJwtSvid(await mintJwtSvid(partner), options());
    expect(svid.id.trustDomain.name).toBe('partner.test');
  });

  it('a token whose aud contains the expected audience among others, and typ JOSE or no typ', async () => {
    const token = await mintJwtSvid(ec, { aud: ['reports', 'api'], header: { typ: 'JOSE' } });
    await expect(validateJwtSvid(token, options())).resolves.toMatchObject({ audience: ['reports', 'api'] });
    await expect(validateJwtSvid(await mintJwtSvid(ec, { header: { typ: null } }), options())).resolves.toBeTruthy();
  });

  it('any of several expected audiences', async () => {
    const token = await mintJwtSvid(ec, { aud: 'spiffe://example.org/api' });
    await expect(validateJwtSvid(token, options({ audience: ['api', 'spiffe://example.org/api'] }))).resolves.toBeTruthy();
  });

  it('a token that expired within the clock skew', async () => {
    const now = new Date();
    const token = await mintJwtSvid(ec, { exp: Math.floor(now.getTime() / 1000) - 10 });
    await expect(validateJwtSvid(token, options({ now }))).resolves.toBeTruthy();
    await expectRejected(token, 'expired', /token has expired/, { now, clockSkewMs: 0 });
  });
});

describe('validateJwtSvid rejects', () => {
  it('a wrong audience', async () => {
    await expectRejected(await mintJwtSvid(ec, { aud: 'billing' }), 'audience', /expected audience in \["api"\] \(audience=\["billing"\]\)/);
  });

  it('an expired token', async () => {
    await expectRejected(await mintJwtSvid(ec, { exp: nowSeconds() - 3600 }), 'expired', /^jwtsvid: token has expired$/);
  });

  it('a token that is not valid yet', async () => {
    await expectRejected(await mintJwtSvid(ec, { nbf: nowSeconds() + 3600 }), 'not-yet-valid', /not valid yet/);
  });

  it('alg none', async () => {
    const token = assemble({ alg: 'none', kid: 'ec-1', typ: 'JWT' }, { sub: 'spiffe://example.org/workload', aud: 'api', exp: nowSeconds() + 600 });
    await expectRejected(token, 'header', /alg "none" is not allowed/);
  });

  it('an HS256 token signed with a secret', async () => {
    await expectRejected(await mintHs256('spiffe://example.org/workload', 'ec-1'), 'header', /alg "HS256" is not allowed/);
  });

  it('an HS256 token signed with the public key bytes as the HMAC secret', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(ec.publicJwk));
    await expectRejected(await mintHs256('spiffe://example.org/workload', 'ec-1', secret), 'header', /HS256/);
  });

  it('an unknown kid', async () => {
    await expectRejected(await mintJwtSvid(ec, { header: { kid: 'rotated-away' } }), 'untrusted', /no JWT authority "rotated-away" found for trust domain "example.org"/);
  });

  it('a kid that exists only in another trust domain\'s bundle', async () => {
    // Signed by partner.test's real key, but claiming an example.org identity.
    const token = await mintJwtSvid(partner, { sub: 'spiffe://example.org/admin' });
    await expectRejected(token, 'untrusted', /no JWT authority "partner-1" found for trust domain "example.org"/);
  });

  it('a sub that is not a SPIFFE ID', async () => {
    await expectRejected(await mintJwtSvid(ec, { sub: 'workload' }), 'subject', /invalid subject claim/);
    await expectRejected(await mintJwtSvid(ec, { sub: 'https://example.org/workload' }), 'subject', /invalid subject claim/);
    await expectRejected(await mintJwtSvid(ec, { sub: null }), 'subject', /missing subject claim/);
  });

  it('a trust domain without a bundle', async () => {
    const stranger = await createIssuer('stranger.test', 'ec-1');
    await expectRejected(await mintJwtSvid(stranger), 'untrusted', /no bundle found for trust domain "stranger.test"/);
  });

  it('a missing exp', async () => {
    await expectRejected(await mintJwtSvid(ec, { exp: null }), 'claims', /missing exp claim/);
  });

  it('a missing or empty aud', async () => {
    await expectRejected(await mintJwtSvid(ec, { aud: null }), 'claims', /missing aud claim/);
    await expectRejected(await mintJwtSvid(ec, { aud: [] }), 'claims', /aud claim must be/);
  });

  it('a missing kid', async () => {
    await expectRejected(await mintJwtSvid(ec, { header: { kid: null } }), 'header', /missing key id/);
  });

  it('a typ other than JWT or JOSE', async () => {
    await expectRejected(await mintJwtSvid(ec, { header: { typ: 'at+jwt' } }), 'header', /typ must be "JWT" or "JOSE"/);
  });

  it('a tampered payload', async () => {
    const token = await mintJwtSvid(ec);
    const [header, , signature] = token.split('.');
    const forged = assemble({}, { sub: 'spiffe://example.org/admin', aud: 'api', exp: nowSeconds() + 600 }).split('.')[1];
    await expectRejected(`${header}.${forged}.${signature}`, 'signature', /signature verification failed/);
  });

  it('a token signed by a key that is not the one its kid names', async () => {
    const impostor = await createIssuer('example.org', 'ec-1');
    await expectRejected(await mintJwtSvid(impostor), 'signature', /signature verification failed/);
  });

  it('a header alg that does not fit the key type', async () => {
    // RSA key "rsa-1" referenced by an ES256 token: the key cannot verify that algorithm.
    await expectRejected(await mintJwtSvid(ec, { header: { kid: 'rsa-1' } }), 'key', /cannot verify ES256 tokens/);
  });

  it('a key whose JWK alg differs from the header alg', async () => {
    const pinned = new JwtBundleSet([new JwtBundle('example.org', [{ ...rsa.publicJwk, alg: 'PS256' }])]);
    await expectRejected(await mintJwtSvid(rsa), 'key', /is for PS256, token uses RS256/, { bundles: pinned });
  });

  it('garbage and JSON serialization', async () => {
    await expectRejected('not-a-token', 'malformed', /compact serialization/);
    await expectRejected('a.b.c.d.e', 'malformed', /compact serialization/);
    await expectRejected('', 'malformed', /empty/);
    await expectRejected('{"payload":"x","signatures":[]}', 'malformed', /compact serialization/);
  });

  it('bad options', async () => {
    const token = await mintJwtSvid(ec);
    await expectRejected(token, 'config', /audience option/, { audience: [] });
    await expectRejected(token, 'config', /clockSkewMs/, { clockSkewMs: 3_600_000 });
    await expectRejected(token, 'config', /JwtBundleSource/, { bundles: {} as JwtBundleSet });
  });
});

describe('parseJwtSvidInsecure', () => {
  it('decodes without verifying', async () => {
    const stranger = await createIssuer('stranger.test', 'x');
    const parsed = parseJwtSvidInsecure(await mintJwtSvid(stranger, { aud: ['a', 'b'] }));
    expect(parsed.id.toString()).toBe('spiffe://stranger.test/workload');
    expect(parsed.audience).toEqual(['a', 'b']);
    expect(parsed.header).toMatchObject({ alg: 'ES256', kid: 'x' });
  });
});
