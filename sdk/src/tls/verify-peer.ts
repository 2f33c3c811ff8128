/**
 * The authoritative peer check shared by servers and clients: strict X509-SVID verification
 * against the bundle of the peer's own trust domain, then the application's Authorizer.
 *
 * Verification results are memoized in one process-wide cache (see x509/verify-cache.ts) when the
 * bundles are an X509BundleSet or X509Bundle: a peer reconnecting with the same chain against the
 * same trust set then costs a hash and a clock check instead of a full path validation. The
 * Authorizer runs on every call, cached or not.
 */
import type { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import type { Authorizer } from '../authorize/authorizer.js';
import type { X509BundleSource } from '../x509/bundle.js';
import { X509SvidVerificationCache } from '../x509/verify-cache.js';
import type { VerifiedSvid } from '../x509/verify.js';
import { asError } from './errors.js';

/** Far more than any real chain; bounds the walk over a peer-controlled structure. */
const MAX_CHAIN = 32;

/** Shared by every server gate and client check in the process; entries are scoped by bundle object. */
export const peerVerificationCache = new X509SvidVerificationCache();

/**
 * The DER chain Node reports for a peer, leaf first. `getPeerCertificate(true)` links each
 * certificate to its issuer; a self-signed root links to itself, which ends the walk.
 */
export function peerChainOf(cert: PeerCertificate | DetailedPeerCertificate | undefined | null): Buffer[] {
  const chain: Buffer[] = [];
  const seen = new Set<object>();
  let current: PeerCertificate | undefined = cert ?? undefined;
  while (current && Buffer.isBuffer(current.raw) && !seen.has(current) && chain.length < MAX_CHAIN) {
    chain.push(current.raw);
    seen.add(current);
    const issuer: PeerCertificate | undefined =
      'issuerCertificate' in current ? (current as DetailedPeerCertificate).issuerCertificate : undefined;
    current = issuer;
  }
  return chain;
}

/** Runs the Authorizer on an already verified peer; throws what it throws, as an Error. */
export function authorizePeer(verified: VerifiedSvid, authorizer: Authorizer): VerifiedSvid {
  try {
    authorizer(verified.id, verified.chain);
  } catch (err) {
    throw asError(err);
  }
  return verified;
}

/**
 * Verifies a peer chain (leaf first) against the bundle of its own trust domain, then runs
 * `authorizer`. Throws (an X509Error of kind `verification`, the authorizer's AuthorizationError, ...)
 * unless the peer is verified and allowed. Results are remembered per bundle set object.
 */
export function verifyPeer(
  chain: readonly (X509Certificate | Uint8Array)[],
  bundles: X509BundleSource,
  authorizer: Authorizer,
): VerifiedSvid {
  return authorizePeer(peerVerificationCache.verify(chain, bundles), authorizer);
}

/**
 * verifyPeer for the detailed certificate Node hands to checkServerIdentity. A returning server
 * whose leaf is known is found by the fingerprint Node already computed, before any DER is copied
 * out of the legacy objects.
 */
export function verifyPeerCertificate(
  peer: PeerCertificate | DetailedPeerCertificate | undefined | null,
  bundles: X509BundleSource,
  authorizer: Authorizer,
): VerifiedSvid {
  const fingerprint = peer?.fingerprint256;
  const known = typeof fingerprint === 'string' ? peerVerificationCache.verifiedLeaf(fingerprint, bundles) : undefined;
  return known !== undefined ? authorizePeer(known, authorizer) : verifyPeer(peerChainOf(peer), bundles, authorizer);
}
