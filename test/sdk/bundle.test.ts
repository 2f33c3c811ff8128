import { beforeAll, describe, expect, it } from 'vitest';
import { TrustDomain } from '@spire-csi/sdk/spiffeid';
import { X509Bundle, X509BundleSet, X509Error } from '@spire-csi/sdk/x509';
import { encodePem } from '../../sdk/src/x509/pem.js';
import { sdkError } from '../helpers/sdk-errors.js';
import { TestCa } from '../helpers/test-ca.js';

let a1: TestCa;
let a2: TestCa;
let b: TestCa;

beforeAll(async () => {
  [a1, a2, b] = await Promise.all([TestCa.create('a.org'), TestCa.create('a.org'), TestCa.create('b.org')]);
});

describe('X509Bundle', () => {
  it('parses PEM and DER into the same bundle', () => {
    const fromPem = X509Bundle.parse('a.org', a1.rootPem + a2.rootPem);
    const fromDer = X509Bundle.fromDer(TrustDomain.parse('a.org'), Buffer.concat([a2.rootDer, a1.rootDer]));
    expect(fromPem.authorities).toHaveLength(2);
    expect(fromPem.trustDomain.name).toBe('a.org');
    expect(fromPem.equals(fromDer)).toBe(true);
    expect(fromPem.isEmpty()).toBe(false);
    expect(X509Bundle.parse('a.org', fromPem.toPem()).equals(fromPem)).toBe(true);
    expect(fromPem.hasAuthority(a1.rootCert)).toBe(true);
    expect(fromPem.hasAuthority(b.rootCert)).toBe(false);
  });

  it('drops duplicate authorities', () => {
    expect(X509Bundle.parse('a.org', a1.rootPem + a1.rootPem).authorities).toHaveLength(1);
  });

  it.each([
    ['empty-pem', () => X509Bundle.parse('a.org', '')],
    ['empty-der', () => X509Bundle.fromDer('a.org', new Uint8Array(0))],
    ['empty-list', () => new X509Bundle('a.org', [])],
  ])('%s is an empty (distrusting) bundle', (_name, make) => {
    expect(make().isEmpty()).toBe(true);
  });

  it.each<[string, () => unknown, RegExp]>([
    ['private-key-block', () => X509Bundle.parse('a.org', a1.rootPem + encodePem('PRIVATE KEY', Buffer.from([0x30, 0]))), /only contain CERTIFICATE blocks, found "PRIVATE KEY"/],
    ['malformed-pem', () => X509Bundle.parse('a.org', `x${a1.rootPem}`), /x509bundle: bundle for "a.org": pem:/],
    ['non-canonical-base64', () => X509Bundle.parse('a.org', a1.rootPem.replace(/\n-----END/, '=\n-----END')), /invalid base64/],
    ['padding-mid-block', () => X509Bundle.parse('a.org', a1.rootPem.replace(/^(-----BEGIN CERTIFICATE-----\n.{60})..../, '$1AA==')), /invalid base64/],
    ['truncated-der', () => X509Bundle.fromDer('a.org', a1.rootDer.subarray(0, 100)), /not concatenated DER/],
    ['garbage-certificate', () => X509Bundle.fromDer('a.org', Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])), /authority 0 is not a valid DER certificate: der: well-formed DER, but not an X.509 certificate$/],
    ['invalid-trust-domain', () => X509Bundle.parse('A.org', a1.rootPem), /spiffeid: trust domain must be lowercase/],
  ])('rejects %s', (_name, make, message) => {
    expect(make).toThrow(message);
  });

  it('typed error', () => {
    expect(() => X509Bundle.parse('a.org', encodePem('X', Buffer.from([1])))).toThrow(sdkError(X509Error, 'bundle'));
  });

  it('equality depends on trust domain and authorities', () => {
    const x = new X509Bundle('a.org', [a1.rootCert]);
    expect(x.equals(new X509Bundle('a.org', [a1.rootCert]))).toBe(true);
    expect(x.equals(new X509Bundle('b.org', [a1.rootCert]))).toBe(false);
    expect(x.equals(new X509Bundle('a.org', [a2.rootCert]))).toBe(false);
    expect(x.equals(new X509Bundle('a.org', [a1.rootCert, a2.rootCert]))).toBe(false);
  });
});

describe('X509BundleSet', () => {
  it('indexes bundles by trust domain', () => {
    const set = new X509BundleSet([new X509Bundle('a.org', [a1.rootCert, a2.rootCert]), new X509Bundle('b.org', [b.rootCert])]);
    expect(set.size).toBe(2);
    expect(set.has('a.org')).toBe(true);
    expect(set.has(TrustDomain.parse('c.org'))).toBe(false);
    expect(set.get('spiffe://b.org')?.authorities).toHaveLength(1);
    expect(set.getX509BundleForTrustDomain(TrustDomain.parse('a.org'))?.authorities).toHaveLength(2);
    expect(set.getX509BundleForTrustDomain(TrustDomain.parse('c.org'))).toBeUndefined();
    expect(set.trustDomains().map(String).sort()).toEqual(['a.org', 'b.org']);
    expect(set.bundles()).toHaveLength(2);
    expect(set.allAuthorities()).toHaveLength(3);
  });

  it('is empty by default', () => {
    expect(new X509BundleSet().size).toBe(0);
  });

  it('rejects two bundles for one trust domain', () => {
    expect(() => new X509BundleSet([new X509Bundle('a.org', [a1.rootCert]), new X509Bundle('a.org', [a2.rootCert])])).toThrow(
      /more than one bundle for trust domain "a.org"/,
    );
  });

  it('with/without return new sets and leave the original alone', () => {
    const set = new X509BundleSet([new X509Bundle('a.org', [a1.rootCert])]);
    const replaced = set.with(new X509Bundle('a.org', [a2.rootCert]));
    const added = set.with(new X509Bundle('b.org', [b.rootCert]));
    expect(set.get('a.org')?.hasAuthority(a1.rootCert)).toBe(true);
    expect(replaced.get('a.org')?.hasAuthority(a2.rootCert)).toBe(true);
    expect(added.size).toBe(2);
    expect(added.without('b.org').equals(set)).toBe(true);
    expect(added.equals(set)).toBe(false);
  });
});
