/**
 * Certificate extensions read straight from the DER. Node's X509Certificate is not enough:
 * `keyUsage` returns extended key usages rather than the key usage bits, `subjectAltName` is a
 * display string in which a comma inside a URI is indistinguishable from a separator, and
 * duplicate extensions are silently merged.
 */
import type { X509Certificate } from 'node:crypto';
import { DerTag, derChildren, derContent, derOid, readDer, type DerNode } from './der.js';
import { X509Error } from './errors.js';

export const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  certificatePolicies: '2.5.29.32',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/**
 * Critical extensions this SDK acts on (or, for policies, whose only effect under the
 * any-policy default is informational). RFC 5280 §4.2 requires rejecting a certificate with a
 * critical extension the verifier does not process.
 */
export const UNDERSTOOD_CRITICAL_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.subjectKeyIdentifier,
  OID.keyUsage,
  OID.subjectAltName,
  OID.basicConstraints,
  OID.nameConstraints,
  OID.certificatePolicies,
  OID.authorityKeyIdentifier,
  OID.extKeyUsage,
]);

export interface CertificateExtension {
  readonly oid: string;
  readonly critical: boolean;
  /** The DER inside the extnValue OCTET STRING. */
  readonly value: Uint8Array;
}

export interface KeyUsage {
  readonly critical: boolean;
  readonly digitalSignature: boolean;
  readonly nonRepudiation: boolean;
  readonly keyEncipherment: boolean;
  readonly dataEncipherment: boolean;
  readonly keyAgreement: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
  readonly encipherOnly: boolean;
  readonly decipherOnly: boolean;
}

export interface BasicConstraints {
  readonly critical: boolean;
  readonly ca: boolean;
  readonly pathLength: number | undefined;
}

const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;

const CONTEXT_EXTENSIONS = 0xa3; // [3] EXPLICIT Extensions in TBSCertificate
const CONTEXT_URI = 0x86; // [6] IMPLICIT IA5String in GeneralName
const CONTEXT_DNS = 0x82; // [2] IMPLICIT IA5String in GeneralName

// Certificates are immutable and re-verified on every handshake, so parse each one once.
const cache = new WeakMap<X509Certificate, ReadonlyMap<string, CertificateExtension>>();

function expectTag(node: DerNode, tag: number, what: string): void {
  if (node.tag !== tag) throw new X509Error('der', `${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)}`);
}

/** Every extension of `cert` keyed by OID. Throws an X509Error (`der`) on malformed DER or duplicates. */
export function extensionsOf(cert: X509Certificate): ReadonlyMap<string, CertificateExtension> {
  const cached = cache.get(cert);
  if (cached) return cached;
  const parsed = parseExtensions(cert.raw);
  cache.set(cert, parsed);
  return parsed;
}

/** Parses the extensions of a DER certificate. */
export function parseExtensions(der: Uint8Array): ReadonlyMap<string, CertificateExtension> {
  const certificate = readDer(der);
  expectTag(certificate, DerTag.SEQUENCE, 'certificate');
  if (certificate.end !== der.length) throw new X509Error('der', 'trailing data after the certificate');
  const [tbs] = derChildren(certificate);
  if (!tbs) throw new X509Error('der', 'certificate has no tbsCertificate');
  expectTag(tbs, DerTag.SEQUENCE, 'tbsCertificate');
  const out = new Map<string, CertificateExtension>();
  const wrapper = derChildren(tbs).find((node) => node.tag === CONTEXT_EXTENSIONS);
  if (!wrapper) return out;
  const [list, ...extra] = derChildren(wrapper);
  if (!list || extra.length > 0) throw new X509Error('der', 'malformed extensions wrapper');
  expectTag(list, DerTag.SEQUENCE, 'extensions');
  for (const ext of derChildren(list)) {
    expectTag(ext, DerTag.SEQUENCE, 'extension');
    const parts = derChildren(ext);
    const oid = derOid(parts[0] ?? missing('extension OID'));
    let critical = false;
    let valueNode = parts[1] ?? missing(`value of extension ${oid}`);
    if (valueNode.tag === DerTag.BOOLEAN) {
      critical = derBoolean(valueNode);
      valueNode = parts[2] ?? missing(`value of extension ${oid}`);
      if (parts.length > 3) throw new X509Error('der', `extension ${oid} has trailing fields`);
    } else if (parts.length > 2) {
      throw new X509Error('der', `extension ${oid} has trailing fields`);
    }
    expectTag(valueNode, DerTag.OCTET_STRING, `extension ${oid} value`);
    // RFC 5280 §4.2: at most one instance of each extension; two SANs could disagree.
    if (out.has(oid)) throw new X509Error('der', `duplicate extension ${oid}`);
    out.set(oid, { oid, critical, value: derContent(valueNode) });
  }
  return out;
}

function missing(what: string): never {
  throw new X509Error('der', `missing ${what}`);
}

function derBoolean(node: DerNode): boolean {
  const content = derContent(node);
  if (content.length !== 1) throw new X509Error('der', 'BOOLEAN must be one byte');
  return content[0] !== 0;
}

/** Key usage bits, or undefined when the extension is absent. */
export function keyUsageOf(cert: X509Certificate): KeyUsage | undefined {
  const ext = extensionsOf(cert).get(OID.keyUsage);
  if (!ext) return undefined;
  const node = readDer(ext.value);
  expectTag(node, DerTag.BIT_STRING, 'key usage');
  if (node.end !== ext.value.length) throw new X509Error('der', 'trailing data after key usage');
  const bytes = derContent(node);
  const unused = bytes[0];
  if (unused === undefined || unused > 7 || (bytes.length === 1 && unused !== 0)) {
    throw new X509Error('der', 'malformed key usage BIT STRING');
  }
  const bit = (i: number): boolean => {
    const byte = bytes[1 + (i >> 3)];
    return byte !== undefined && (byte & (0x80 >> (i & 7))) !== 0;
  };
  const usage: Record<string, boolean> = { critical: ext.critical };
  KEY_USAGE_BITS.forEach((name, i) => {
    usage[name] = bit(i);
  });
  return usage as unknown as KeyUsage;
}

/** Basic constraints, or undefined when the extension is absent (which RFC 5280 reads as cA=false). */
export function basicConstraintsOf(cert: X509Certificate): BasicConstraints | undefined {
  const ext = extensionsOf(cert).get(OID.basicConstraints);
  if (!ext) return undefined;
  const node = readDer(ext.value);
  expectTag(node, DerTag.SEQUENCE, 'basic constraints');
  let ca = false;
  let pathLength: number | undefined;
  for (const child of derChildren(node)) {
    if (child.tag === DerTag.BOOLEAN) ca = derBoolean(child);
    else if (child.tag === DerTag.INTEGER) pathLength = derSmallInteger(child);
    else throw new X509Error('der', 'unexpected field in basic constraints');
  }
  return { critical: ext.critical, ca, pathLength };
}

function derSmallInteger(node: DerNode): number {
  const bytes = derContent(node);
  if (bytes.length === 0 || bytes.length > 4 || (bytes[0]! & 0x80) !== 0) {
    throw new X509Error('der', 'expected a small non-negative INTEGER');
  }
  return bytes.reduce((acc, b) => acc * 256 + b, 0);
}

function generalNamesOf(cert: X509Certificate, tag: number): string[] {
  const ext = extensionsOf(cert).get(OID.subjectAltName);
  if (!ext) return [];
  const node = readDer(ext.value);
  expectTag(node, DerTag.SEQUENCE, 'subject alternative name');
  return derChildren(node)
    .filter((name) => name.tag === tag)
    .map((name) => Buffer.from(derContent(name)).toString('latin1'));
}

/** Every URI SAN in order, exactly as encoded. */
export function uriSansOf(cert: X509Certificate): string[] {
  return generalNamesOf(cert, CONTEXT_URI);
}

export function dnsSansOf(cert: X509Certificate): string[] {
  return generalNamesOf(cert, CONTEXT_DNS);
}

/** Extended key usage OIDs, or undefined when the extension is absent. */
export function extendedKeyUsagesOf(cert: X509Certificate): string[] | undefined {
  const ext = extensionsOf(cert).get(OID.extKeyUsage);
  if (!ext) return undefined;
  const node = readDer(ext.value);
  expectTag(node, DerTag.SEQUENCE, 'extended key usage');
  return derChildren(node).map(derOid);
}

/** OIDs of critical extensions this SDK does not process (RFC 5280 says: reject). */
export function unhandledCriticalExtensionsOf(cert: X509Certificate): string[] {
  return [...extensionsOf(cert).values()]
    .filter((ext) => ext.critical && !UNDERSTOOD_CRITICAL_EXTENSIONS.has(ext.oid))
    .map((ext) => ext.oid);
}
