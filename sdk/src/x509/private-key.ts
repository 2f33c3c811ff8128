/**
 * Does a PKCS#8 key belong to a certificate? For EC keys the answer comes from the private scalar:
 * the public point is derived from it (ECDH) and compared with the certificate's. That is cheaper
 * than OpenSSL 3's key import (~25 µs instead of ~0.5 ms per P-256 key, and the driver checks a
 * fresh key for every pod on every rotation), and stricter: OpenSSL takes the public key a PKCS#8
 * file embeds at its word, so a scalar paired with someone else's embedded public key passes
 * `createPublicKey(key).equals(cert.publicKey)`. Other key types are compared by OpenSSL.
 */
import { createECDH, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { DerTag, derChildren, derContent, derOid, readDer, type DerNode } from './der.js';

/** OpenSSL curve names of the named curves of RFC 5480, by OID, with their JWK names. */
const CURVES: ReadonlyMap<string, { readonly name: string; readonly jwkCurve: string; readonly scalarBytes: number }> = new Map([
  ['1.2.840.10045.3.1.7', { name: 'prime256v1', jwkCurve: 'P-256', scalarBytes: 32 }],
  ['1.3.132.0.34', { name: 'secp384r1', jwkCurve: 'P-384', scalarBytes: 48 }],
  ['1.3.132.0.35', { name: 'secp521r1', jwkCurve: 'P-521', scalarBytes: 66 }],
]);
const CURVE_BY_NAME = new Map([...CURVES.values()].map((curve) => [curve.name, curve]));

const EC_PUBLIC_KEY_OID = '1.2.840.10045.2.1';
const CONTEXT_0 = 0xa0;
const CONTEXT_1 = 0xa1;

/** How a PKCS#8 key relates to a certificate's public key. */
export type KeyCheck = 'matches' | 'mismatch' | 'unusable';

/** Whether `keyDer` (PKCS#8) is the private key of `publicKey`; `unusable` when it is no valid unencrypted PKCS#8 key. */
export function checkPrivateKey(keyDer: Uint8Array, publicKey: KeyObject): KeyCheck {
  const parsed = parseEcPkcs8(keyDer);
  if (parsed !== undefined) {
    // Only the canonical encoding (RFC 5915: the scalar at the curve's full length) is decided here.
    const found = CURVES.get(parsed.curveOid);
    const curve = found?.scalarBytes === parsed.scalar.length ? found : undefined;
    const derived = curve === undefined ? undefined : derivePoint(curve.name, parsed.scalar);
    if (curve !== undefined && derived !== undefined) {
      // An embedded public key that is not the scalar's makes the key inconsistent, whatever it claims.
      if (parsed.embeddedPoint !== undefined && !derived.equals(parsed.embeddedPoint)) return 'mismatch';
      return pointOf(publicKey, curve.name)?.equals(derived) === true ? 'matches' : 'mismatch';
    }
  }
  // Everything else (other encodings, curves, key types), imported by OpenSSL.
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(keyDer), format: 'der', type: 'pkcs8' });
  } catch {
    return 'unusable';
  }
  if (privateKey.asymmetricKeyType !== publicKey.asymmetricKeyType) return 'mismatch';
  const name = privateKey.asymmetricKeyType === 'ec' ? privateKey.asymmetricKeyDetails?.namedCurve : undefined;
  if (name !== undefined && name !== publicKey.asymmetricKeyDetails?.namedCurve) return 'mismatch';
  if (name !== undefined && CURVE_BY_NAME.has(name)) {
    let derived: Buffer | undefined;
    try {
      const d = privateKey.export({ format: 'jwk' }).d;
      derived = name === undefined || d === undefined ? undefined : derivePoint(name, Buffer.from(d, 'base64url'));
    } catch {
      // OpenSSL imports some keys it cannot use, e.g. a zero scalar (the point at infinity).
      derived = undefined;
    }
    if (derived === undefined) return 'unusable';
    if (pointOf(publicKey, name)?.equals(derived) !== true) return 'mismatch';
    // TLS pairs the certificate with the public key OpenSSL sees, so that one must agree too.
    return createPublicKey(privateKey).equals(publicKey) ? 'matches' : 'mismatch';
  }
  // Other key types and curves. Same type (and curve) only: comparing keys of different types
  // leaves an error on OpenSSL's queue that fails the process's next crypto call
  // (ERR_OSSL_EVP_DIFFERENT_KEY_TYPES, Node 20–24).
  return createPublicKey(privateKey).equals(publicKey) ? 'matches' : 'mismatch';
}

/** The uncompressed public point of `scalar` on `curve`; undefined when the scalar is not a valid private key there. */
function derivePoint(curve: string, scalar: Uint8Array): Buffer | undefined {
  if (!CURVE_BY_NAME.has(curve)) return undefined;
  try {
    const ecdh = createECDH(curve);
    ecdh.setPrivateKey(scalar);
    return ecdh.getPublicKey();
  } catch {
    return undefined;
  }
}

/** The uncompressed point of an EC public key on `curve`; undefined for any other key. */
function pointOf(publicKey: KeyObject, curve: string): Buffer | undefined {
  // The JWK's crv names the curve; asymmetricKeyDetails would cost a second trip into OpenSSL.
  if (publicKey.asymmetricKeyType !== 'ec') return undefined;
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.x === undefined || jwk.y === undefined || jwk.crv !== CURVE_BY_NAME.get(curve)?.jwkCurve) return undefined;
  return Buffer.concat([Buffer.from([0x04]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}

/**
 * PrivateKeyInfo (RFC 5208) v0 without attributes, holding an ECPrivateKey (RFC 5915) v1 for a
 * named curve; undefined for any other shape.
 */
function parseEcPkcs8(der: Uint8Array): { readonly curveOid: string; readonly scalar: Uint8Array; readonly embeddedPoint: Uint8Array | undefined } | undefined {
  try {
    return parseEcPkcs8Strict(der);
  } catch {
    return undefined;
  }
}

function parseEcPkcs8Strict(der: Uint8Array) {
  const outer = readDer(der);
  if (outer.tag !== DerTag.SEQUENCE || outer.end !== der.length) return undefined;
  const fields = derChildren(outer);
  if (fields.length !== 3) return undefined;
  const [version, algorithm, privateKey] = fields as [DerNode, DerNode, DerNode];
  if (!isSmallInteger(version, 0) || algorithm.tag !== DerTag.SEQUENCE || privateKey.tag !== DerTag.OCTET_STRING) return undefined;
  const algorithmFields = derChildren(algorithm);
  if (algorithmFields.length !== 2) return undefined;
  const [algorithmOid, parameters] = algorithmFields as [DerNode, DerNode];
  if (derOid(algorithmOid) !== EC_PUBLIC_KEY_OID || parameters.tag !== DerTag.OID) return undefined;
  const curveOid = derOid(parameters);

  const inner = derContent(privateKey);
  const ecKey = readDer(inner);
  if (ecKey.tag !== DerTag.SEQUENCE || ecKey.end !== inner.length) return undefined;
  const ecFields = derChildren(ecKey);
  if (ecFields.length < 2 || ecFields.length > 4) return undefined;
  const [ecVersion, scalar, ...optional] = ecFields as [DerNode, DerNode, ...DerNode[]];
  if (!isSmallInteger(ecVersion, 1) || scalar.tag !== DerTag.OCTET_STRING) return undefined;
  let embeddedPoint: Uint8Array | undefined;
  let lastTag = 0;
  for (const field of optional) {
    // [0] parameters then [1] publicKey, each at most once, in that order.
    if (field.tag <= lastTag) return undefined;
    lastTag = field.tag;
    const wrapped = derChildren(field);
    if (wrapped.length !== 1) return undefined;
    const value = wrapped[0]!;
    if (field.tag === CONTEXT_0) {
      if (value.tag !== DerTag.OID || derOid(value) !== curveOid) return undefined;
    } else if (field.tag === CONTEXT_1) {
      const bits = derContent(value);
      // A BIT STRING with no unused bits, holding the encoded point.
      if (value.tag !== DerTag.BIT_STRING || bits.length < 2 || bits[0] !== 0) return undefined;
      embeddedPoint = bits.subarray(1);
    } else {
      return undefined;
    }
  }
  return { curveOid, scalar: derContent(scalar), embeddedPoint };
}

function isSmallInteger(node: DerNode, expected: number): boolean {
  const content = derContent(node);
  return node.tag === DerTag.INTEGER && content.length === 1 && content[0] === expected;
}
