import { generateKeyPair, exportJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { JwtError } from '../../sdk/src/jwt/errors.js';
import { sdkError } from '../helpers/sdk-errors.js';
import { JwtBundle } from '../../sdk/src/jwt/jwt-bundle.js';
import { JwtBundleSet } from '../../sdk/src/jwt/jwt-bundle-set.js';
import { TrustDomain } from '../../sdk/src/spiffeid/trust-domain.js';
import { createIssuer, jwksOf, type Issuer } from './jwt-fixtures.js';

let ec: Issuer;
let rsa: Issuer;

beforeAll(async () => {
  ec = await createIssuer('example.org', 'ec-1', 'ES256');
  rsa = await createIssuer('example.org', 'rsa-1', 'RS256');
});

describe('JwtBundle.parse', () => {
  it('reads EC and RSA keys by kid from a JWKS document', () => {
    const bundle = JwtBundle.parse('example.org', Buffer.from(jwksOf(ec, rsa)));
    expect(bundle.trustDomain.name).toBe('example.org');
    expect(bundle.keyIds().sort()).toEqual(['ec-1', 'rsa-1']);
    expect(bundle.findKey('ec-1')).toMatchObject({ kty: 'EC', crv: 'P-256', kid: 'ec-1', use: 'jwt-svid' });
    expect(bundle.findKey('nope')).toBeUndefined();
  });

  it('accepts keys without use and skips keys meant for other uses (SPIFFE bundle)', () => {
    const { use: _use, ...withoutUse } = ec.publicJwk;
    const x509Key = { ...rsa.publicJwk, use: 'x509-svid', x5c: ['AAAA'] };
    const bundle = JwtBundle.parse(TrustDomain.parse('example.org'), {
      keys: [withoutUse, x509Key],
      spiffe_sequence: 3,
      spiffe_refresh_hint: 300,
    });
    expect(bundle.keyIds()).toEqual(['ec-1']);
  });

  it('treats an empty key list as a trust domain without JWT-SVID keys', () => {
    expect(JwtBundle.parse('example.org', '{"keys":[]}').isEmpty()).toBe(true);
  });

  it('drops members that do not describe the public key', () => {
    const bundle = JwtBundle.parse('example.org', { keys: [{ ...ec.publicJwk, key_ops: ['sign'], x5c: ['AAAA'] }] });
    expect(Object.keys(bundle.findKey('ec-1')!).sort()).toEqual(['crv', 'kid', 'kty', 'use', 'x', 'y']);
  });

  it.each([
    ['malformed JSON', '{"keys": [', /not valid JSON/],
    ['a non-object document', '[1,2]', /JSON object with a "keys" array/],
    ['no keys array', '{"key": []}', /no "keys" array/],
    ['a key that is not an object', '{"keys": [42]}', /key 0 is not a JSON object/],
  ])('rejects %s', (_name, json, message) => {
    expect(() => JwtBundle.parse('example.org', json)).toThrow(sdkError(JwtError, 'bundle'));
    expect(() => JwtBundle.parse('example.org', json)).toThrow(message);
  });

  it.each<[string, (jwk: Record<string, unknown>) => Record<string, unknown>, RegExp]>([
    ['a key without kid', ({ kid: _kid, ...rest }) => rest, /"kid" is required/],
    ['a key with a numeric kid', (jwk) => ({ ...jwk, kid: 7 }), /"kid" must be a string/],
    ['a key with a bad point', (jwk) => ({ ...jwk, x: 'AAAA' }), /not a valid EC public key/],
    ['a key with an unsupported curve', (jwk) => ({ ...jwk, crv: 'secp256k1' }), /unsupported EC curve/],
    ['a key without kty', ({ kty: _kty, ...rest }) => rest, /"kty" is required/],
    ['an OKP key', (jwk) => ({ kid: jwk.kid, kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }), /unsupported key type "OKP"/],
  ])('rejects %s', (_name, mutate, message) => {
    const json = JSON.stringify({ keys: [mutate({ ...ec.publicJwk })] });
    expect(() => JwtBundle.parse('example.org', json)).toThrow(message);
  });

  it('rejects private keys and symmetric keys without echoing them', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'leak' };
    expect(() => JwtBundle.parse('example.org', { keys: [privateJwk] })).toThrow(/private key \(has "d"\)/);
    try {
      JwtBundle.parse('example.org', { keys: [privateJwk] });
    } catch (err) {
      expect((err as Error).message).not.toContain(privateJwk.d!);
    }
    expect(() => JwtBundle.parse('example.org', { keys: [{ kty: 'oct', kid: 's', k: 'c2VjcmV0' }] })).toThrow(/symmetric/);
  });

  it('rejects duplicate kids', () => {
    expect(() => JwtBundle.parse('example.org', { keys: [ec.publicJwk, { ...rsa.publicJwk, kid: 'ec-1' }] })).toThrow(/duplicate kid "ec-1"/);
  });

  it('rejects an invalid trust domain name', () => {
    expect(() => JwtBundle.parse('Not A Domain', '{"keys":[]}')).toThrow();
  });

  it('compares by keys, not by JSON layout', () => {
    const a = JwtBundle.parse('example.org', jwksOf(ec, rsa));
    const b = JwtBundle.parse('example.org', JSON.stringify({ keys: [rsa.publicJwk, { ...ec.publicJwk, extra: 1 }] }));
    expect(a.equals(b)).toBe(true);
    expect(a.equals(JwtBundle.parse('example.org', jwksOf(ec)))).toBe(false);
    expect(a.equals(JwtBundle.parse('other.org', jwksOf(ec, rsa)))).toBe(false);
    expect(JwtBundle.parse('example.org', JSON.stringify(a.toJwks())).equals(a)).toBe(true);
  });
});

describe('JwtBundleSet', () => {
  it('holds one bundle per trust domain', () => {
    const own = JwtBundle.parse('example.org', jwksOf(ec));
    const partner = JwtBundle.parse('partner.test', jwksOf(rsa));
    const set = new JwtBundleSet([own, partner]);
    expect(set.size).toBe(2);
    expect(set.get('example.org')).toBe(own);
    expect(set.getJwtBundleForTrustDomain(TrustDomain.parse('partner.test'))).toBe(partner);
    expect(set.has('nowhere.test')).toBe(false);
    expect(set.trustDomains().map((td) => td.name).sort()).toEqual(['example.org', 'partner.test']);
    expect(set.without('partner.test').size).toBe(1);
    expect(set.with(JwtBundle.parse('example.org', jwksOf(rsa))).get('example.org')!.keyIds()).toEqual(['rsa-1']);
    expect(() => new JwtBundleSet([own, own])).toThrow(/more than one bundle/);
    expect(set.equals(new JwtBundleSet([partner, own]))).toBe(true);
  });
});
