/**
 * Certificate validity read from the DER. Node 20's X509Certificate only offers `validFrom` as a
 * display string; parsing the UTCTime/GeneralizedTime directly is exact and version-independent.
 */
import type { X509Certificate } from 'node:crypto';
import { DerTag, derChildren, derContent, readDer, type DerNode } from './der.js';
import { X509Error } from './errors.js';

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
const cache = new WeakMap<X509Certificate, Validity>();

export function validityOf(cert: X509Certificate): Validity {
  let validity = cache.get(cert);
  if (!validity) {
    validity = parseValidity(cert.raw);
    cache.set(cert, validity);
  }
  return validity;
}

/** RFC 5280 §4.1.2.5: the period is inclusive at both ends. */
export function isWithinValidity(cert: X509Certificate, now: Date): boolean {
  const { notBefore, notAfter } = validityOf(cert);
  const t = now.getTime();
  return t >= notBefore.getTime() && t <= notAfter.getTime();
}

export function parseValidity(der: Uint8Array): Validity {
  const certificate = readDer(der);
  const [tbs] = derChildren(certificate);
  if (!tbs || tbs.tag !== DerTag.SEQUENCE) throw new X509Error('der', 'certificate has no tbsCertificate');
  const fields = derChildren(tbs);
  // An explicit [0] version shifts every later field by one.
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const validity = fields[offset + 3];
  if (!validity || validity.tag !== DerTag.SEQUENCE) throw new X509Error('der', 'certificate has no validity');
  const [notBefore, notAfter, ...rest] = derChildren(validity);
  if (!notBefore || !notAfter || rest.length > 0) throw new X509Error('der', 'malformed validity');
  return { notBefore: parseTime(notBefore), notAfter: parseTime(notAfter) };
}

function parseTime(node: DerNode): Date {
  const text = Buffer.from(derContent(node)).toString('latin1');
  let match: RegExpExecArray | null;
  let year: number;
  if (node.tag === UTC_TIME) {
    match = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, otherwise 20YY.
    if (match) year = Number(match[1]) >= 50 ? 1900 + Number(match[1]) : 2000 + Number(match[1]);
  } else if (node.tag === GENERALIZED_TIME) {
    match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (match) year = Number(match[1]);
  } else {
    throw new X509Error('der', `unexpected time tag 0x${node.tag.toString(16)}`);
  }
  if (!match) throw new X509Error('der', `malformed time ${JSON.stringify(text)}`);
  const [, , mo, d, h, mi, s] = match.map(Number) as number[];
  const ms = Date.UTC(year!, mo! - 1, d!, h!, mi!, s!);
  const date = new Date(ms);
  if (Number.isNaN(ms) || date.getUTCMonth() !== mo! - 1 || date.getUTCDate() !== d!) {
    throw new X509Error('der', `invalid time ${JSON.stringify(text)}`);
  }
  return date;
}
