/**
 * The authoritative peer check shared by servers and clients: strict X509-SVID verification
 * against the bundle of the peer's own trust domain, then the application's Authorizer.
 */
import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import type { Authorizer } from '../authorize/authorizer.js';
import type { X509BundleSource } from '../x509/bundle.js';
import { verifyX509Svid, type VerifiedSvid } from '../x509/verify.js';
import { asError } from './errors.js';

/** Far more than any real chain; bounds the walk over a peer-controlled structure. */
const MAX_CHAIN = 32;

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

/** Throws (X509VerificationError, AuthorizationError, ...) unless the peer is verified and allowed. */
export function verifyPeer(
  chain: readonly Uint8Array[],
  bundles: X509BundleSource,
  authorizer: Authorizer,
): VerifiedSvid {
  const verified = verifyX509Svid(chain, bundles);
  try {
    authorizer(verified.id, verified.chain);
  } catch (err) {
    throw asError(err);
  }
  return verified;
}
