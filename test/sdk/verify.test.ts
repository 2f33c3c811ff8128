import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { TrustDomain } from '@spire-csi/sdk/spiffeid';
import { X509Bundle, X509BundleSet, X509Error, verifyX509Svid, type X509BundleSource } from '@spire-csi/sdk/x509';
import { sdkError } from '../helpers/sdk-errors.js';
import { TestCa, type MintOptions } from '../helpers/test-ca.js';

const A = 'a.org';
const ID = 'spiffe://a.org/workload';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);
const later = (ms: number) => new Date(Date.now() + ms);

let caA: TestCa;
let caB: TestCa;
let bundles: X509BundleSet;

const certs = (ders: readonly Buffer[]) => ders.map((der) => new X509Certificate(der));

beforeAll(async () => {
  [caA, caB] = await Promise.all([TestCa.create(A), TestCa.create('b.org')]);
  bundles = new X509BundleSet([new X509Bundle(A, [caA.rootCert]), new X509Bundle('b.org', [caB.rootCert])]);
});

describe('verifyX509Svid accepts', () => {
  it('leaf-signed-by-root', async () => {
    const minted = await caA.mint(ID);
    const result = verifyX509Svid(certs(minted.chainDer), bundles);
    expect(result.id.toString()).toBe(ID);
    expect(result.chain.map((c) => c.fingerprint256)).toEqual([minted.cert.fingerprint256, caA.rootCert.fingerprint256]);
  });

  it('leaf-via-two-intermediates, given as DER', async () => {
    const inter2 = await (await caA.intermediate()).intermediate();
    const minted = await inter2.mint(ID);
    expect(minted.chainDer).toHaveLength(3);
    expect(verifyX509Svid(minted.chainDer, bundles).chain).toHaveLength(4);
  });

  it('unordered-intermediates', async () => {
    const inter1 = await caA.intermediate();
    const inter2 = await inter1.intermediate();
    const minted = await inter2.mint(ID);
    const [leaf, i2, i1] = minted.chainDer;
    expect(verifyX509Svid([leaf!, i1!, i2!], bundles).chain).toHaveLength(4);
  });

  it('peer-also-sends-root-and-junk', async () => {
    const minted = await (await caA.intermediate()).mint(ID);
    const junk = (await caB.mint('spiffe://b.org/x')).certDer;
    expect(verifyX509Svid([...minted.chainDer, junk, caA.rootDer], bundles).id.toString()).toBe(ID);
  });

  it('bundle-with-rotated-roots', async () => {
    const next = await TestCa.create(A);
    const set = new X509BundleSet([new X509Bundle(A, [caA.rootCert, next.rootCert])]);
    expect(verifyX509Svid((await next.mint(ID)).chainDer, set).id.toString()).toBe(ID);
    expect(verifyX509Svid((await caA.mint(ID)).chainDer, set).id.toString()).toBe(ID);
  });

  it('rsa-ca-and-leaf', async () => {
    const rsa = await TestCa.create(A, { keyType: 'rsa' });
    const minted = await rsa.mint(ID, { keyType: 'rsa', keyUsages: ['digitalSignature', 'keyEncipherment'] });
    expect(verifyX509Svid(minted.chainDer, new X509Bundle(A, [rsa.rootCert])).id.toString()).toBe(ID);
  });

  it('at-explicit-now inside validity', async () => {
    const root = await TestCa.create(A, { notAfter: later(5 * HOUR) });
    const minted = await root.mint(ID, { notBefore: later(HOUR), notAfter: later(2 * HOUR) });
    const bundle = new X509Bundle(A, [root.rootCert]);
    expect(() => verifyX509Svid(minted.chainDer, bundle, { now: later(1.5 * HOUR) })).not.toThrow();
    expect(() => verifyX509Svid(minted.chainDer, bundle)).toThrow(/not valid before/);
  });

  it('permitted-uri-name-constraint', async () => {
    const constrained = await caA.intermediate({ nameConstraints: { permitted: { uri: [A] } } });
    expect(verifyX509Svid((await constrained.mint(ID)).chainDer, bundles).id.toString()).toBe(ID);
  });

  it('permitted-dns-name-constraint', async () => {
    const constrained = await caA.intermediate({ nameConstraints: { permitted: { dns: ['svc.local'] } } });
    const minted = await constrained.mint(ID, { dnsNames: ['web.svc.local'] });
    expect(() => verifyX509Svid(minted.chainDer, bundles)).not.toThrow();
  });

  it('path-length-within-limit', async () => {
    const root = await TestCa.create(A, { pathLength: 1 });
    const minted = await (await root.intermediate()).mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, new X509Bundle(A, [root.rootCert]))).not.toThrow();
  });
});

describe('verifyX509Svid rejects', () => {
  const leafCases: [string, string | null, MintOptions, RegExp][] = [
    ['no-uri-san', null, {}, /no URI SAN/],
    ['two-uri-sans', ID, { extraUris: ['spiffe://a.org/other'] }, /2 URI SANs/],
    ['uri-san-not-spiffe', 'https://a.org/x', {}, /not a valid SPIFFE ID/],
    ['root-path', 'spiffe://a.org', {}, /has no path/],
    ['leaf-ca-true', ID, { isCa: true }, /must not be a CA/],
    ['no-key-usage', ID, { keyUsages: null }, /no key usage extension/],
    ['no-digital-signature', ID, { keyUsages: ['keyAgreement'] }, /must include digitalSignature/],
    ['leaf-key-cert-sign', ID, { keyUsages: ['digitalSignature', 'keyCertSign'] }, /must not include keyCertSign/],
    ['leaf-crl-sign', ID, { keyUsages: ['digitalSignature', 'cRLSign'] }, /must not include cRLSign/],
    ['expired-leaf', ID, { notBefore: ago(2 * HOUR), notAfter: ago(HOUR) }, /leaf certificate .* expired at/],
    ['not-yet-valid-leaf', ID, { notBefore: later(HOUR), notAfter: later(2 * HOUR) }, /not valid before/],
    ['unknown-critical-extension', ID, { extraExtensions: [{ oid: '1.2.3.4.5', critical: true, valueDer: Buffer.from([5, 0]) }] }, /unsupported critical extension\(s\) 1\.2\.3\.4\.5/],
    ['signed-by-wrong-key', ID, {}, /not signed by an authority of trust domain "a.org"/],
  ];
  it.each(leafCases)('%s', async (name, id, options, message) => {
    const signWith = name === 'signed-by-wrong-key' ? await TestCa.create(A) : undefined;
    const minted = await caA.mint(id, { ...options, signWith });
    const run = () => verifyX509Svid(minted.chainDer, bundles);
    expect(run).toThrow(sdkError(X509Error, 'verification'));
    expect(run).toThrow(message);
    expect(run).toThrow(/^x509svid: /);
  });

  it('unknown-non-critical-extension is fine (control)', async () => {
    const minted = await caA.mint(ID, { extraExtensions: [{ oid: '1.2.3.4.5', critical: false, valueDer: Buffer.from([5, 0]) }] });
    expect(() => verifyX509Svid(minted.chainDer, bundles)).not.toThrow();
  });

  it('signed-by-other-td (even with both bundles loaded)', async () => {
    const minted = await caB.mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, bundles)).toThrow(/not signed by an authority of trust domain "a.org"/);
  });

  it('intermediate-of-other-td', async () => {
    const minted = await (await caB.intermediate()).mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, bundles)).toThrow(/not signed by an authority of trust domain "a.org"/);
  });

  it('no-bundle-for-td', async () => {
    const minted = await caA.mint(ID);
    const onlyB = new X509BundleSet([new X509Bundle('b.org', [caB.rootCert, caA.rootCert])]);
    expect(() => verifyX509Svid(minted.chainDer, onlyB)).toThrow('x509svid: no bundle for trust domain "a.org"');
  });

  it('empty-bundle distrusts the domain', async () => {
    const minted = await caA.mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, new X509Bundle(A, []))).toThrow(/no bundle for trust domain "a.org"/);
  });

  it('source-returning-another-domains-bundle', async () => {
    const minted = await caA.mint(ID);
    const lying: X509BundleSource = { getX509BundleForTrustDomain: () => new X509Bundle('b.org', [caA.rootCert]) };
    expect(() => verifyX509Svid(minted.chainDer, lying)).toThrow(/no bundle for trust domain "a.org"/);
  });

  it('self-signed-leaf', async () => {
    const self = await TestCa.create(A, { isCa: false, keyUsages: ['digitalSignature'], uris: [ID] });
    expect(() => verifyX509Svid([self.rootCert], bundles)).toThrow(/not signed by an authority/);
  });

  it.each<[string, Parameters<TestCa['intermediate']>[0], RegExp]>([
    ['intermediate-not-ca', { isCa: false }, /intermediate certificate .* is not a CA/],
    ['intermediate-no-basic-constraints', { isCa: null }, /intermediate certificate .* is not a CA/],
    ['intermediate-without-key-cert-sign', { keyUsages: ['cRLSign'] }, /intermediate certificate .* must include keyCertSign/],
    ['intermediate-no-key-usage', { keyUsages: null }, /intermediate certificate .* has no key usage extension/],
    ['expired-intermediate', { notBefore: ago(2 * HOUR), notAfter: ago(HOUR) }, /intermediate certificate .* expired at/],
    ['intermediate-unknown-critical-extension', { extraExtensions: [{ oid: '1.2.3.9', critical: true, valueDer: Buffer.from([5, 0]) }] }, /unsupported critical extension/],
  ])('%s', async (_name, options, message) => {
    const minted = await (await caA.intermediate(options)).mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, bundles)).toThrow(message);
  });

  it('expired-root', async () => {
    const root = await TestCa.create(A, { notBefore: ago(2 * HOUR), notAfter: ago(HOUR) });
    const minted = await root.mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, new X509Bundle(A, [root.rootCert]))).toThrow(/bundle authority .* expired at/);
  });

  it('anchor-malformed-basic-constraints', async () => {
    const bad = { oid: '2.5.29.19', critical: true, valueDer: Buffer.from([0x30, 0x03, 0x04, 0x01, 0x00]) };
    const root = await TestCa.create(A, { isCa: null, extraExtensions: [bad] });
    const minted = await root.mint(ID);
    const verify = () => verifyX509Svid(minted.chainDer, new X509Bundle(A, [root.rootCert]));
    expect(verify).toThrow(sdkError(X509Error, 'verification'));
    expect(verify).toThrow(/certificate path is malformed: der: unexpected field in basic constraints/);
  });

  it('path-length-exceeded', async () => {
    const root = await TestCa.create(A, { pathLength: 0 });
    const minted = await (await root.intermediate()).mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, new X509Bundle(A, [root.rootCert]))).toThrow(/allows 0 intermediate\(s\) below it, found 1/);
  });

  it.each<[string, NonNullable<Parameters<TestCa['intermediate']>[0]>['nameConstraints'], MintOptions, RegExp]>([
    ['uri-outside-permitted', { permitted: { uri: ['other.org'] } }, {}, /URI host "a.org" is outside the permitted name constraints/],
    ['uri-excluded', { excluded: { uri: ['.org'] } }, {}, /URI host "a.org" is excluded by name constraints/],
    ['dns-outside-permitted', { permitted: { dns: ['svc.local'] } }, { dnsNames: ['evil.com'] }, /DNS name "evil.com" is outside/],
    ['unsupported-ip-constraint', { permitted: { ip: ['10.0.0.0/8'] } }, {}, /name constraints this verifier cannot enforce/],
  ])('%s', async (_name, nameConstraints, mintOptions, message) => {
    const minted = await (await caA.intermediate({ nameConstraints })).mint(ID, mintOptions);
    expect(() => verifyX509Svid(minted.chainDer, bundles)).toThrow(message);
  });

  it('empty-chain', () => {
    expect(() => verifyX509Svid([], bundles)).toThrow(/no certificates presented/);
  });

  it('garbage-der', () => {
    expect(() => verifyX509Svid([Buffer.from([0x30, 0x01, 0x00])], bundles)).toThrow(/presented certificate 0 is invalid/);
  });

  it('too-many-certificates', async () => {
    const minted = await caA.mint(ID);
    const many = Array.from({ length: 40 }, () => caA.rootDer);
    expect(() => verifyX509Svid([minted.certDer, ...many], bundles)).toThrow(/too many certificates/);
  });

  it('bundle-disappears: the same chain stops verifying', async () => {
    const minted = await caA.mint(ID);
    expect(() => verifyX509Svid(minted.chainDer, bundles)).not.toThrow();
    expect(() => verifyX509Svid(minted.chainDer, bundles.without(TrustDomain.parse(A)))).toThrow(/no bundle/);
  });
});
