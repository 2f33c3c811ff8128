import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { X509Error, X509Svid } from '@spire-csi/sdk/x509';
import { encodePem } from '../../sdk/src/x509/pem.js';
import { sdkError } from '../helpers/sdk-errors.js';
import { TestCa, type MintOptions } from '../helpers/test-ca.js';

const TD = 'example.org';
const ID = 'spiffe://example.org/workload';
let ca: TestCa;
let intermediate: TestCa;

beforeAll(async () => {
  ca = await TestCa.create(TD);
  intermediate = await ca.intermediate();
});

describe('X509Svid.parse accepts', () => {
  it.each<[string, () => Promise<{ chainPem: string; keyPem: string }>]>([
    ['leaf-only', () => ca.mint(ID)],
    ['leaf-with-intermediate', () => intermediate.mint(ID)],
    ['rsa-leaf', () => ca.mint(ID, { keyType: 'rsa' })],
    ['key-usage-with-key-encipherment', () => ca.mint(ID, { keyUsages: ['digitalSignature', 'keyEncipherment'] })],
    ['key-usage-not-critical', () => ca.mint(ID, { keyUsageCritical: false })],
    ['no-basic-constraints', () => ca.mint(ID, { isCa: null })],
    ['no-extended-key-usage', () => ca.mint(ID, { extendedKeyUsages: null })],
    ['dns-san-alongside', () => ca.mint(ID, { dnsNames: ['web.example.org'] })],
    ['expired (time is not checked by parse)', () => ca.mint(ID, { notAfter: new Date(Date.now() - 3_600_000), notBefore: new Date(Date.now() - 7_200_000) })],
  ])('%s', async (_name, make) => {
    const minted = await make();
    const svid = X509Svid.parse(minted.chainPem, minted.keyPem);
    expect(svid.id.toString()).toBe(ID);
  });

  it('exposes the chain, key and dates', async () => {
    const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 600_000);
    const minted = await intermediate.mint(ID, { notAfter, serial: '0a1b2c' });
    const svid = X509Svid.parse(Buffer.from(minted.chainPem), Buffer.from(minted.keyPem));
    expect(svid.certificates).toHaveLength(2);
    expect(svid.leaf.raw.equals(minted.certDer)).toBe(true);
    expect(svid.notAfter.getTime()).toBe(notAfter.getTime());
    expect(svid.notBefore.getTime()).toBeLessThan(Date.now());
    expect(svid.serialNumber.toLowerCase()).toBe('0a1b2c');
    expect(svid.chainPem()).toBe(minted.chainPem);
    expect(svid.privateKeyPem()).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(svid.isValidAt(new Date())).toBe(true);
    expect(svid.isValidAt(new Date(notAfter.getTime() + 1000))).toBe(false);
    expect(JSON.stringify(svid)).not.toMatch(/PRIVATE/);
  });

  it('round-trips through privateKeyPem/chainPem', async () => {
    const minted = await ca.mint(ID);
    const svid = X509Svid.parse(minted.chainPem, minted.keyPem);
    expect(X509Svid.parse(svid.chainPem(), svid.privateKeyPem()).id.equals(svid.id)).toBe(true);
  });
});

describe('X509Svid.parse rejects', () => {
  const cases: [string, string | null, MintOptions, RegExp][] = [
    ['no-uri-san', null, {}, /no URI SAN/],
    ['two-uri-sans', ID, { extraUris: ['spiffe://example.org/other'] }, /2 URI SANs/],
    ['uri-san-not-spiffe', 'https://example.org/x', {}, /not a valid SPIFFE ID: spiffeid: scheme/],
    ['uri-san-invalid-path', 'spiffe://example.org/a//b', {}, /not a valid SPIFFE ID: .*empty segments/],
    ['root-path', 'spiffe://example.org', {}, /has no path/],
    ['leaf-ca-true', ID, { isCa: true }, /must not be a CA/],
    ['no-key-usage', ID, { keyUsages: null }, /no key usage extension/],
    ['key-usage-empty', ID, { keyUsages: [] }, /must include digitalSignature/],
    ['no-digital-signature', ID, { keyUsages: ['keyEncipherment'] }, /must include digitalSignature/],
    ['leaf-key-cert-sign', ID, { keyUsages: ['digitalSignature', 'keyCertSign'] }, /must not include keyCertSign/],
    ['leaf-crl-sign', ID, { keyUsages: ['digitalSignature', 'cRLSign'] }, /must not include cRLSign/],
  ];
  it.each(cases)('%s', async (_name, id, options, message) => {
    const minted = await ca.mint(id, options);
    const parse = () => X509Svid.parse(minted.chainPem, minted.keyPem);
    expect(parse).toThrow(sdkError(X509Error, 'svid'));
    expect(parse).toThrow(message);
    expect(parse).toThrow(/^x509svid: /);
  });

  it('intermediate-not-ca', async () => {
    const notCa = await ca.intermediate({ isCa: false });
    const minted = await notCa.mint(ID);
    expect(() => X509Svid.parse(minted.chainPem, minted.keyPem)).toThrow(/signing certificate 1 .* is not a CA/);
  });

  it('intermediate-without-key-cert-sign', async () => {
    const weak = await ca.intermediate({ keyUsages: ['cRLSign', 'digitalSignature'] });
    const minted = await weak.mint(ID);
    expect(() => X509Svid.parse(minted.chainPem, minted.keyPem)).toThrow(/must include keyCertSign/);
  });

  it('chain-out-of-order', async () => {
    const minted = await intermediate.mint(ID);
    const [leaf, inter] = minted.chainDer;
    const pem = encodePem('CERTIFICATE', inter!) + encodePem('CERTIFICATE', leaf!);
    expect(() => X509Svid.parse(pem, minted.keyPem)).toThrow(sdkError(X509Error, 'svid'));
  });

  it('leaf-not-signed-by-next', async () => {
    const minted = await ca.mint(ID);
    const unrelated = await (await TestCa.create(TD)).intermediate();
    const pem = minted.certPem + unrelated.certPem;
    expect(() => X509Svid.parse(pem, minted.keyPem)).toThrow(/certificate 0 .* is not signed by certificate 1/);
  });

  it('key-mismatch', async () => {
    const a = await ca.mint(ID);
    const b = await ca.mint(ID);
    expect(() => X509Svid.parse(a.chainPem, b.keyPem)).toThrow(/private key does not match/);
  });

  it.each([
    ['ec-private-key-label', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'pem' }).toString(), /found "EC PRIVATE KEY"/],
    ['rsa-private-key-label', () => generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), /found "RSA PRIVATE KEY"/],
    ['garbage-pkcs8', () => encodePem('PRIVATE KEY', Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])), /not a valid unencrypted PKCS#8 key/],
    ['empty-key', () => '', /no private key found/],
  ])('%s', async (_name, makeKey, message) => {
    const minted = await ca.mint(ID);
    expect(() => X509Svid.parse(minted.chainPem, makeKey())).toThrow(message);
  });

  it('two-key-blocks', async () => {
    const minted = await ca.mint(ID);
    expect(() => X509Svid.parse(minted.chainPem, minted.keyPem + minted.keyPem)).toThrow(/one private key block/);
  });

  it('empty-chain', async () => {
    const minted = await ca.mint(ID);
    expect(() => X509Svid.parse('', minted.keyPem)).toThrow(/certificate chain is empty/);
  });

  it('non-certificate-block-in-chain', async () => {
    const minted = await ca.mint(ID);
    expect(() => X509Svid.parse(minted.certPem + minted.keyPem, minted.keyPem)).toThrow(/only CERTIFICATE blocks/);
  });

  it('invalid-pem', async () => {
    const minted = await ca.mint(ID);
    expect(() => X509Svid.parse(`junk\n${minted.certPem}`, minted.keyPem)).toThrow(/x509svid: certificate chain: pem:/);
  });

  it('error messages never contain the key', async () => {
    const a = await ca.mint(ID);
    const b = await ca.mint(ID);
    const body = b.keyPem.split('\n')[1]!;
    try {
      X509Svid.parse(a.chainPem, b.keyPem);
    } catch (err) {
      expect(String(err)).not.toContain(body);
    }
  });
});

describe('X509Svid.parseCredentialBundle', () => {
  it('accepts key then certificates', async () => {
    const minted = await intermediate.mint(ID);
    const svid = X509Svid.parseCredentialBundle(minted.keyPem + minted.chainPem);
    expect(svid.certificates).toHaveLength(2);
  });
  it.each<[string, (m: { keyPem: string; chainPem: string; certPem: string }) => string, RegExp]>([
    ['certificate-first', (m) => m.chainPem + m.keyPem, /must start with a PKCS#8 "PRIVATE KEY" block, found "CERTIFICATE"/],
    ['key-twice', (m) => m.keyPem + m.keyPem + m.chainPem, /only CERTIFICATE blocks/],
    ['key-only', (m) => m.keyPem, /certificate chain is empty/],
    ['empty', () => '', /credential bundle is empty/],
    ['other-block', (m) => m.keyPem + m.certPem + encodePem('X509 CRL', Buffer.from([0x30, 0x00])), /only CERTIFICATE blocks/],
  ])('rejects %s', async (_name, build, message) => {
    const minted = await ca.mint(ID);
    expect(() => X509Svid.parseCredentialBundle(build(minted))).toThrow(message);
  });
});

describe('X509Svid.fromDer', () => {
  it('accepts concatenated DER and arrays', async () => {
    const minted = await intermediate.mint(ID);
    expect(X509Svid.fromDer(Buffer.concat(minted.chainDer), minted.keyDer).certificates).toHaveLength(2);
    expect(X509Svid.fromDer(minted.chainDer, minted.keyDer).certificates).toHaveLength(2);
    expect(X509Svid.fromDer(new Uint8Array(minted.certDer), new Uint8Array(minted.keyDer)).id.toString()).toBe(ID);
  });
  it.each<[string, (m: { chainDer: Buffer[] }) => Uint8Array | Uint8Array[], RegExp]>([
    ['truncated-concatenation', (m) => Buffer.concat(m.chainDer).subarray(0, -1), /not concatenated DER/],
    ['trailing-garbage-in-array-item', (m) => [Buffer.concat([m.chainDer[0]!, Buffer.from([0])])], /trailing data/],
    ['not-a-certificate', () => [Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])], /certificate 0 is not a valid DER certificate: der: well-formed DER, but not an X.509 certificate$/],
    ['empty', () => Buffer.alloc(0), /certificate chain is empty/],
  ])('rejects %s', async (_name, build, message) => {
    const minted = await intermediate.mint(ID);
    expect(() => X509Svid.fromDer(build(minted), minted.keyDer)).toThrow(message);
  });
});
