/**
 * The per-certificate rules of X509-SVID.md (§4.1, §4.3, §5.2), shared by parsing our own SVID
 * and verifying a peer's. Callers pass an error factory so the same rule surfaces as
 * an `svid` X509Error when loading credentials and as a `verification` one during a handshake.
 */
import type { X509Certificate } from 'node:crypto';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import { messageOf } from '../internal/error-text.js';
import { basicConstraintsOf, keyUsageOf, unhandledCriticalExtensionsOf, uriSansOf } from './extensions.js';

export type Fail = (message: string, cause?: unknown) => Error;

/** A short human name for a certificate in error messages (never key material). */
export function describeCert(cert: X509Certificate): string {
  const subject = cert.subject.replace(/\n/g, ', ');
  return subject === '' ? `serial ${cert.serialNumber}` : `"${subject}"`;
}

/** Runs `read`, turning DER errors into a rule failure about `what`. */
function parsed<T>(what: string, read: () => T, fail: Fail): T {
  try {
    return read();
  } catch (err) {
    throw fail(`${what} is malformed: ${messageOf(err)}`, err);
  }
}

function checkCriticalExtensions(cert: X509Certificate, what: string, fail: Fail): void {
  const unhandled = parsed(what, () => unhandledCriticalExtensionsOf(cert), fail);
  if (unhandled.length > 0) {
    throw fail(`${what} has unsupported critical extension(s) ${unhandled.join(', ')}`);
  }
}

/**
 * Enforces the leaf rules and returns the SPIFFE ID. The key usage extension must be present
 * (§4.3 "MUST be set on all SVIDs"); its criticality is not enforced, matching the §5.2
 * validation list and go-spiffe, so certificates from lenient issuers still interoperate.
 */
export function checkLeaf(cert: X509Certificate, fail: Fail): SpiffeId {
  const what = 'leaf certificate';
  const uris = parsed(what, () => uriSansOf(cert), fail);
  if (uris.length === 0) throw fail('leaf certificate has no URI SAN; an X509-SVID needs exactly one');
  if (uris.length > 1) throw fail(`leaf certificate has ${uris.length} URI SANs; an X509-SVID must have exactly one`);
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uris[0]!);
  } catch (err) {
    throw fail(`leaf certificate URI SAN is not a valid SPIFFE ID: ${messageOf(err)}`, err);
  }
  if (id.isTrustDomainId) {
    throw fail(`leaf certificate SPIFFE ID ${id.toString()} has no path; a leaf SVID needs a non-root path`);
  }
  const constraints = parsed(what, () => basicConstraintsOf(cert), fail);
  if (constraints?.ca) throw fail('leaf certificate must not be a CA (basic constraints cA is true)');
  const usage = parsed(what, () => keyUsageOf(cert), fail);
  if (!usage) throw fail('leaf certificate has no key usage extension');
  if (!usage.digitalSignature) throw fail('leaf certificate key usage must include digitalSignature');
  if (usage.keyCertSign) throw fail('leaf certificate key usage must not include keyCertSign');
  if (usage.cRLSign) throw fail('leaf certificate key usage must not include cRLSign');
  checkCriticalExtensions(cert, what, fail);
  return id;
}

/** Enforces the signing-certificate rules for a presented intermediate. */
export function checkSigningCert(cert: X509Certificate, what: string, fail: Fail): void {
  const constraints = parsed(what, () => basicConstraintsOf(cert), fail);
  if (!constraints?.ca) throw fail(`${what} ${describeCert(cert)} is not a CA (basic constraints cA must be true)`);
  const usage = parsed(what, () => keyUsageOf(cert), fail);
  if (!usage) throw fail(`${what} ${describeCert(cert)} has no key usage extension`);
  if (!usage.keyCertSign) throw fail(`${what} ${describeCert(cert)} key usage must include keyCertSign`);
  checkCriticalExtensions(cert, what, fail);
}

/**
 * True when `cert` names `issuer` as its issuer and `issuer`'s key produced the signature.
 * Deliberately not X509Certificate.checkIssued: OpenSSL folds key usage into it, which would turn
 * "intermediate lacks keyCertSign" into an unexplained "not signed by", and its rules vary by
 * OpenSSL version. The signature is the security check; the name match only guides path building.
 */
export function isSignedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.issuer === issuer.subject && cert.verify(issuer.publicKey);
  } catch {
    // An unsupported or mismatched key type means "not this issuer", not a crash.
    return false;
  }
}
