/**
 * Peer X509-SVID verification (X509-SVID.md §5). A pure function of (chain, bundles, now): no
 * system CAs, no hostnames. The trust domain is read from the unverified leaf and ONLY that
 * domain's bundle may anchor the path, so a certificate claiming domain A that chains to domain
 * B's CA is rejected even when B is trusted for B's own identities.
 */
import { X509Certificate } from 'node:crypto';
import { systemClock } from '../clock/clock.js';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import type { X509Bundle, X509BundleSource } from './bundle.js';
import { parseCertificateDer } from './certificate.js';
import { messageOf } from '../internal/error-text.js';
import { X509Error } from './errors.js';
import { basicConstraintsOf } from './extensions.js';
import { checkNameConstraints } from './name-constraints.js';
import { checkLeaf, checkSigningCert, describeCert, isSignedBy } from './svid-rules.js';
import { isWithinValidity, validityOf } from './validity.js';

/** Options of {@link verifyX509Svid}. */
export interface VerifyOptions {
  /** The time to check validity at; defaults to the current time. */
  now?: Date;
}

/** A peer that passed {@link verifyX509Svid}. */
export interface VerifiedSvid {
  /** The peer's SPIFFE ID. */
  readonly id: SpiffeId;
  /** The verified path: leaf, intermediates used, then the bundle authority that anchored it. */
  readonly chain: X509Certificate[];
}

/** Longer paths than this are refused outright: real SPIFFE hierarchies are a few levels deep. */
const MAX_PATH_LENGTH = 10;
/** Bounds the work a peer can cause by presenting many certificates. */
const MAX_PRESENTED = 32;

const fail = (message: string, cause?: unknown): Error => new X509Error('verification', message, { cause });

function toCertificate(item: X509Certificate | Uint8Array, index: number): X509Certificate {
  if (item instanceof X509Certificate) return item;
  try {
    return parseCertificateDer(item);
  } catch (err) {
    throw fail(`presented certificate ${index} is invalid: ${messageOf(err)}`, err);
  }
}

/** Malformed extensions surface from deep helpers as `der` errors; callers only ever see `verification`. */
function asVerificationError(err: unknown): Error {
  return err instanceof X509Error && err.kind === 'verification' ? err : fail(`certificate path is malformed: ${messageOf(err)}`, err);
}

function checkTime(cert: X509Certificate, what: string, now: Date): void {
  let ok: boolean;
  try {
    ok = isWithinValidity(cert, now);
  } catch (err) {
    throw fail(`${what} ${describeCert(cert)} has a malformed validity: ${messageOf(err)}`, err);
  }
  if (ok) return;
  const { notBefore, notAfter } = validityOf(cert);
  const state = now < notBefore ? `is not valid before ${notBefore.toISOString()}` : `expired at ${notAfter.toISOString()}`;
  throw fail(`${what} ${describeCert(cert)} ${state}`);
}

/** RFC 5280 §4.2.1.9: a CA's pathLenConstraint bounds the intermediates below it. */
function checkPathLength(path: readonly X509Certificate[]): void {
  for (let i = 1; i < path.length; i++) {
    const limit = basicConstraintsOf(path[i]!)?.pathLength;
    if (limit === undefined) continue;
    // Intermediates strictly between the leaf (index 0) and this CA; self-issued ones do not count.
    const below = path.slice(1, i).filter((cert) => cert.subject !== cert.issuer).length;
    if (below > limit) {
      throw fail(`certificate ${describeCert(path[i]!)} allows ${limit} intermediate(s) below it, found ${below}`);
    }
  }
}

/**
 * Depth-first search for a path from `path`'s last certificate to an authority of `bundle`,
 * trying presented certificates in order (peers may send extras or an unordered chain).
 * Returns the completed path or the first reason the most promising branch failed.
 */
function buildPath(
  path: X509Certificate[],
  presented: readonly X509Certificate[],
  bundle: X509Bundle,
  now: Date,
  tried: Set<X509Certificate>,
): X509Certificate[] | Error {
  const current = path[path.length - 1]!;
  let reason: Error | undefined;
  for (const authority of bundle.authorities) {
    if (!isSignedBy(current, authority)) continue;
    try {
      checkTime(authority, 'bundle authority', now);
      const full = [...path, authority];
      checkPathLength(full);
      checkNameConstraints(full, fail);
      return full;
    } catch (err) {
      // Another authority (e.g. a renewed root with the same key) may still anchor the path.
      reason ??= asVerificationError(err);
    }
  }
  if (path.length < MAX_PATH_LENGTH) {
    for (const candidate of presented) {
      // Expanding each candidate at most once keeps a hostile chain of look-alike CAs linear.
      if (tried.has(candidate) || !isSignedBy(current, candidate)) continue;
      tried.add(candidate);
      try {
        checkSigningCert(candidate, 'intermediate certificate', fail);
        checkTime(candidate, 'intermediate certificate', now);
      } catch (err) {
        reason ??= asVerificationError(err);
        continue;
      }
      const result = buildPath([...path, candidate], presented, bundle, now, tried);
      if (Array.isArray(result)) return result;
      reason ??= result;
    }
  }
  return (
    reason ??
    fail(
      `certificate ${describeCert(current)} is not signed by an authority of trust domain "${bundle.trustDomain.name}"`,
    )
  );
}

/**
 * Verifies a peer's chain (leaf first) against the bundle of the leaf's own trust domain.
 * Throws an {@link X509Error} of kind `verification` saying which rule failed.
 */
export function verifyX509Svid(
  chain: readonly (X509Certificate | Uint8Array)[],
  bundles: X509BundleSource,
  options: VerifyOptions = {},
): VerifiedSvid {
  const now = options.now ?? systemClock.now();
  if (chain.length === 0) throw fail('no certificates presented');
  if (chain.length > MAX_PRESENTED) throw fail(`too many certificates presented (${chain.length} > ${MAX_PRESENTED})`);
  const certs = chain.map(toCertificate);
  const leaf = certs[0]!;
  const id = checkLeaf(leaf, fail);
  const td = id.trustDomain;
  const bundle = bundles.getX509BundleForTrustDomain(td);
  // A source returning another domain's bundle must not let that domain vouch for this one.
  if (!bundle || bundle.isEmpty() || !bundle.trustDomain.equals(td)) throw fail(`no bundle for trust domain "${td.name}"`);
  checkTime(leaf, 'leaf certificate', now);
  const result = buildPath([leaf], certs.slice(1), bundle, now, new Set([leaf]));
  if (!Array.isArray(result)) throw result;
  return { id, chain: result };
}
