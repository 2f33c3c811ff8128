import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { X509Svid } from '@spire-csi/sdk/x509';
import { checkPrivateKey, type KeyCheck } from '../../sdk/src/x509/private-key.js';
import { TestCa } from '../helpers/test-ca.js';

/** What OpenSSL says: import the key, compare public components (same key type only, see checkPrivateKey). */
function openSslSays(der: Uint8Array, publicKey: KeyObject): KeyCheck {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  } catch {
    return 'unusable';
  }
  if (key.asymmetricKeyType !== publicKey.asymmetricKeyType) return 'mismatch';
  return createPublicKey(key).equals(publicKey) ? 'matches' : 'mismatch';
}

/** OpenSSL's answer, made strict: an EC key only matches when its scalar yields the certificate's point. */
function strictReference(der: Uint8Array, publicKey: KeyObject): KeyCheck {
  let said: KeyCheck;
  try {
    said = openSslSays(der, publicKey);
  } catch {
    return 'unusable';
  }
  if (said !== 'matches' || publicKey.asymmetricKeyType !== 'ec') return said;
  const key = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  const ecdh = createECDH(key.asymmetricKeyDetails!.namedCurve!);
  try {
    ecdh.setPrivateKey(Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url'));
  } catch {
    return 'unusable';
  }
  const jwk = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  return ecdh.getPublicKey().equals(point) ? 'matches' : 'mismatch';
}

function ecPair(namedCurve: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
  return { der: privateKey.export({ type: 'pkcs8', format: 'der' }), publicKey };
}

/** DER TLV with a definite length (short or long form). */
function tlv(tag: number, content: Buffer): Buffer {
  const len = content.length;
  const header = len < 0x80 ? Buffer.from([tag, len]) : len < 0x100 ? Buffer.from([tag, 0x81, len]) : Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
  return Buffer.concat([header, content]);
}

/** A P-256 PKCS#8 rebuilt from its parts, so tests can drop or alter the optional fields. */
function p256Pkcs8(scalar: Buffer, options: { params?: boolean; point?: Buffer } = {}): Buffer {
  const curveOid = Buffer.from('06082a8648ce3d030107', 'hex');
  const ecPublicKeyOid = Buffer.from('06072a8648ce3d0201', 'hex');
  const parts = [Buffer.from('020101', 'hex'), tlv(0x04, scalar)];
  if (options.params !== false) parts.push(tlv(0xa0, curveOid));
  if (options.point !== undefined) parts.push(tlv(0xa1, tlv(0x03, Buffer.concat([Buffer.from([0]), options.point]))));
  const ecPrivateKey = tlv(0x30, Buffer.concat(parts));
  return tlv(0x30, Buffer.concat([Buffer.from('020100', 'hex'), tlv(0x30, Buffer.concat([ecPublicKeyOid, curveOid])), tlv(0x04, ecPrivateKey)]));
}

function p256Parts() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  return { scalar: Buffer.from(jwk.d!, 'base64url'), point, publicKey };
}

describe('checkPrivateKey', () => {
  it.each(['P-256', 'P-384', 'P-521'])('accepts a %s key for its own public key and refuses it for another', (curve) => {
    const key = ecPair(curve);
    const other = ecPair(curve);
    expect(checkPrivateKey(key.der, key.publicKey)).toBe('matches');
    expect(checkPrivateKey(key.der, other.publicKey)).toBe('mismatch');
  });

  it('refuses a key of another curve or another type', () => {
    const p256 = ecPair('P-256');
    expect(checkPrivateKey(p256.der, ecPair('P-384').publicKey)).toBe('mismatch');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(checkPrivateKey(p256.der, rsa.publicKey)).toBe('mismatch');
    expect(checkPrivateKey(rsa.privateKey.export({ type: 'pkcs8', format: 'der' }), p256.publicKey)).toBe('mismatch');
  });

  it('decides RSA and Ed25519 keys through OpenSSL', () => {
    for (const pair of [generateKeyPairSync('rsa', { modulusLength: 2048 }), generateKeyPairSync('ed25519')]) {
      const der = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
      expect(checkPrivateKey(der, pair.publicKey)).toBe('matches');
    }
  });

  it.each(['brainpoolP256r1', 'secp256k1'])('decides an EC key on %s, a curve outside RFC 5480, through OpenSSL', (curve) => {
    const key = ecPair(curve);
    expect(checkPrivateKey(key.der, key.publicKey)).toBe('matches');
    expect(checkPrivateKey(key.der, ecPair(curve).publicKey)).toBe('mismatch');
    expect(checkPrivateKey(key.der, ecPair('P-256').publicKey)).toBe('mismatch');
  });

  it('accepts the encodings RFC 5915 allows: without parameters, without the public key, or with both', () => {
    const { scalar, point, publicKey } = p256Parts();
    for (const der of [p256Pkcs8(scalar), p256Pkcs8(scalar, { params: false }), p256Pkcs8(scalar, { point })]) {
      expect(openSslSays(der, publicKey)).toBe('matches');
      expect(checkPrivateKey(der, publicKey)).toBe('matches');
    }
  });

  it("refuses a scalar paired with another key's embedded public key, which OpenSSL's comparison accepts", () => {
    const { scalar, publicKey } = p256Parts();
    const other = p256Parts();
    const forged = p256Pkcs8(scalar, { point: other.point });
    // OpenSSL takes the embedded public key at its word: the old check passed this key for other's certificate.
    expect(openSslSays(forged, other.publicKey)).toBe('matches');
    expect(checkPrivateKey(forged, other.publicKey)).toBe('mismatch');
    expect(checkPrivateKey(forged, publicKey)).toBe('mismatch');
  });

  it('leaves no OpenSSL error behind after comparing keys of different types', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = ecPair('P-256');
    const rsaDer = rsa.privateKey.export({ type: 'pkcs8', format: 'der' });
    expect(checkPrivateKey(rsaDer, ec.publicKey)).toBe('mismatch');
    expect(checkPrivateKey(rsaDer, rsa.publicKey)).toBe('matches');
    expect(() => createPrivateKey({ key: rsaDer, format: 'der', type: 'pkcs8' })).not.toThrow();
  });

  it('refuses scalars out of range, including zero, which OpenSSL imports', () => {
    const { publicKey } = p256Parts();
    const order = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
    for (const scalar of [Buffer.alloc(32), order, Buffer.alloc(32, 0xff), Buffer.alloc(31, 1)]) {
      expect(checkPrivateKey(p256Pkcs8(scalar), publicKey)).not.toBe('matches');
    }
  });

  it('agrees with OpenSSL, made strict about the scalar, on every single-byte corruption of a key and on truncations', () => {
    const key = ecPair('P-256');
    const der = Buffer.from(key.der);
    let matches = 0;
    for (let i = 0; i < der.length; i++) {
      for (const flip of [0x01, 0x80, 0xff]) {
        const mutated = Buffer.from(der);
        mutated[i] = mutated[i]! ^ flip;
        // Accepted exactly when the strict reference accepts; a refusal may be worded either way
        // (an embedded point off the curve is "unusable" to OpenSSL, a "mismatch" to the scalar check).
        const accepted = strictReference(mutated, key.publicKey) === 'matches';
        if (accepted) matches++;
        expect(checkPrivateKey(mutated, key.publicKey) === 'matches', `byte ${i} ^ 0x${flip.toString(16)}`).toBe(accepted);
      }
    }
    for (let len = 0; len < der.length; len++) {
      expect(checkPrivateKey(der.subarray(0, len), key.publicKey)).toBe('unusable');
    }
    const trailing = Buffer.concat([der, Buffer.from([0])]);
    expect(checkPrivateKey(trailing, key.publicKey)).toBe(strictReference(trailing, key.publicKey));
    // Corruptions of the encoding's slack (e.g. the optional curve parameters' tag) may keep it usable, most do not.
    expect(matches).toBeLessThan(der.length);
  });
});

describe('X509Svid private key', () => {
  it('imports the key on first use only, and it is the key that signs for the leaf', async () => {
    const ca = await TestCa.create('example.org');
    const minted = await ca.mint('spiffe://example.org/workload');
    const svid = X509Svid.parse(minted.chainPem, minted.keyPem);
    const key = svid.privateKey;
    expect(svid.privateKey).toBe(key);
    expect(createPublicKey(key).equals(svid.leaf.publicKey)).toBe(true);
    // The PEM holds the very bytes that were checked (no re-encoding by an import/export round trip).
    expect(svid.privateKeyPem().replace(/\s+/g, '')).toBe(minted.keyPem.replace(/\s+/g, ''));
    expect(createPublicKey(createPrivateKey(svid.privateKeyPem())).equals(svid.leaf.publicKey)).toBe(true);
  });

  it('is not changed by the caller reusing its buffer', async () => {
    const ca = await TestCa.create('example.org');
    const minted = await ca.mint('spiffe://example.org/workload');
    const keyDer = createPrivateKey(minted.keyPem).export({ type: 'pkcs8', format: 'der' });
    const svid = X509Svid.fromDer(minted.certDer, keyDer);
    keyDer.fill(0);
    expect(createPublicKey(svid.privateKey).equals(svid.leaf.publicKey)).toBe(true);
  });
});
