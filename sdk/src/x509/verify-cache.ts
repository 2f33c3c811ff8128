/**
 * Memoized X509-SVID verification for the TLS paths. A service's peers present the same chains on
 * every connection (an SVID lives for an hour or so), and a full verification (parsing each
 * certificate, the SDK's DER rules, a signature check per link) costs more server CPU than the rest
 * of the SPIFFE layer combined. verifyX509Svid is a pure function of (chain, bundles, time), so its
 * result can be reused as long as all three are unchanged:
 *
 * - chain: the key is the SHA-256 of every presented certificate, in order;
 * - bundles: entries live under the exact X509BundleSet (or X509Bundle) object they were verified
 *   against, in a WeakMap. Those objects are immutable and sources replace them on every trust
 *   change, so a new bundle starts with an empty cache and an old one takes its entries with it
 *   when it is collected;
 * - time: every hit re-checks the clock against the validity of every certificate on the verified
 *   path; outside it the entry is dropped and the chain verified afresh, which reports why.
 *   Every miss also drops the entries already past their validity.
 *
 * Failures are never cached (a rejected peer pays the full check each time, and its error message
 * stays exact), and the Authorizer is not part of this: callers run it on every connection.
 *
 * A leaf signed directly by an authority of its bundle is also remembered under the leaf's
 * fingerprint alone (verifiedLeaf): the verifier tries the bundle's authorities before any
 * presented certificate, so whatever else such a peer sends can never change the outcome. That
 * lets the TLS paths identify a returning peer from the leaf, without reading the rest of the chain.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { systemClock } from '../clock/clock.js';
import { X509BundleSet } from './bundle-set.js';
import { X509Bundle, type X509BundleSource } from './bundle.js';
import { validityOf } from './validity.js';
import { verifyX509Svid, type VerifiedSvid, type VerifyOptions } from './verify.js';

/** Chains remembered per bundle set: far more peers than a typical service talks to. */
export const DEFAULT_VERIFICATION_CACHE_ENTRIES = 1024;
/** Longer chains are refused by the verifier (MAX_PRESENTED there); they are never looked up. */
const MAX_KEYED_CHAIN = 32;
/** Prefix of the leaf-only keys, which no chain key can start with (those are hex or base64). */
const LEAF_KEY = 'leaf:';

export interface X509SvidVerificationCacheOptions {
  /** Verified chains remembered per bundle set (least recently used evicted first). Default 1024. */
  readonly maxEntries?: number;
}

interface Entry {
  readonly id: VerifiedSvid['id'];
  readonly chain: readonly X509Certificate[];
  /** Epoch ms: the latest notBefore and the earliest notAfter on the verified path (inclusive). */
  readonly validFrom: number;
  readonly validUntil: number;
}

type Presented = X509Certificate | Uint8Array;

/**
 * Only the SDK's own immutable bundle containers can scope a cache. Any other X509BundleSource
 * (an X509Source, a subclass, an application's object) may answer differently from one call to
 * the next, so chains verified against it are never remembered.
 */
function scopeOf(bundles: X509BundleSource): object | undefined {
  const proto: unknown = Object.getPrototypeOf(bundles);
  return proto === X509BundleSet.prototype || proto === X509Bundle.prototype ? bundles : undefined;
}

/**
 * X509Certificate caches its fingerprint256 (a SHA-256 of the DER), and Node hands out peer
 * certificates as X509Certificate objects; raw DER is hashed here. The two spellings differ (hex
 * with colons vs base64), so the same certificate given both ways is two keys, never a collision.
 */
function keyOf(chain: readonly Presented[]): string | undefined {
  let key = '';
  for (const item of chain) {
    if (item instanceof X509Certificate) key += `${item.fingerprint256};`;
    else if (item instanceof Uint8Array) key += `${createHash('sha256').update(item).digest('base64')};`;
    else return undefined;
  }
  return key;
}

function entryOf(verified: VerifiedSvid): Entry {
  let validFrom = -Infinity;
  let validUntil = Infinity;
  for (const cert of verified.chain) {
    // Already parsed (and memoized) by the verification that just succeeded.
    const { notBefore, notAfter } = validityOf(cert);
    validFrom = Math.max(validFrom, notBefore.getTime());
    validUntil = Math.min(validUntil, notAfter.getTime());
  }
  return { id: verified.id, chain: Object.freeze([...verified.chain]), validFrom, validUntil };
}

/**
 * Peers rotate their SVIDs (SPIRE at half-life), so without this a long-lived process would keep
 * every superseded chain it ever verified until the size bound pushed it out. Past its validity an
 * entry can never be a hit again.
 */
function dropExpired(entries: Map<string, Entry>, now: number): void {
  for (const [key, entry] of entries) if (now > entry.validUntil) entries.delete(key);
}

export class X509SvidVerificationCache {
  readonly maxEntries: number;
  private readonly scopes = new WeakMap<object, Map<string, Entry>>();
  private hitCount = 0;
  private missCount = 0;

  constructor(options: X509SvidVerificationCacheOptions = {}) {
    const max = options.maxEntries ?? DEFAULT_VERIFICATION_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxEntries must be a positive integer, got ${String(max)}`);
    this.maxEntries = max;
  }

  /** Verifications answered from the cache / run in full since construction (for tests and metrics). */
  get stats(): { readonly hits: number; readonly misses: number } {
    return { hits: this.hitCount, misses: this.missCount };
  }

  /** Chains remembered for this exact bundle container. */
  sizeFor(bundles: X509BundleSource): number {
    const scope = scopeOf(bundles);
    return scope === undefined ? 0 : (this.scopes.get(scope)?.size ?? 0);
  }

  /**
   * The remembered verification of a leaf that chains directly to an authority of `bundles`, by
   * the leaf's SHA-256 fingerprint as Node spells it (X509Certificate#fingerprint256, or a
   * PeerCertificate's fingerprint256); undefined when there is none, or it is no longer within
   * its validity. Never verifies anything: on undefined, call verify() with the presented chain.
   */
  verifiedLeaf(fingerprint256: string, bundles: X509BundleSource, options: VerifyOptions = {}): VerifiedSvid | undefined {
    const scope = scopeOf(bundles);
    const entries = scope === undefined ? undefined : this.scopes.get(scope);
    return entries === undefined ? undefined : this.hit(entries, LEAF_KEY + fingerprint256, options);
  }

  /**
   * verifyX509Svid with memoization; same contract (throws an X509Error of kind `verification`, returns the id
   * and the verified path). Each call gets its own copy of the path array.
   */
  verify(chain: readonly Presented[], bundles: X509BundleSource, options: VerifyOptions = {}): VerifiedSvid {
    const scope = scopeOf(bundles);
    if (scope === undefined || chain.length === 0 || chain.length > MAX_KEYED_CHAIN) {
      this.missCount++;
      return verifyX509Svid(chain, bundles, options);
    }
    let entries = this.scopes.get(scope);
    const leaf = chain[0];
    if (entries !== undefined && leaf instanceof X509Certificate) {
      // Cheapest first: one fingerprint instead of one per presented certificate.
      const known = this.hit(entries, LEAF_KEY + leaf.fingerprint256, options);
      if (known !== undefined) return known;
    }
    const key = keyOf(chain);
    if (key === undefined) {
      this.missCount++;
      return verifyX509Svid(chain, bundles, options);
    }
    if (entries !== undefined) {
      const known = this.hit(entries, key, options);
      if (known !== undefined) return known;
    }
    this.missCount++;
    const verified = verifyX509Svid(chain, bundles, options);
    if (entries === undefined) {
      entries = new Map();
      this.scopes.set(scope, entries);
    }
    const entry = entryOf(verified);
    // A miss already paid for a full verification; a pass over the entries is small next to it.
    dropExpired(entries, (options.now ?? systemClock.now()).getTime());
    this.remember(entries, key, entry);
    // leaf + authority: nothing else the peer presents can change the outcome (see the header).
    if (verified.chain.length === 2) this.remember(entries, LEAF_KEY + verified.chain[0]!.fingerprint256, entry);
    return verified;
  }

  private hit(entries: Map<string, Entry>, key: string, options: VerifyOptions): VerifiedSvid | undefined {
    const cached = entries.get(key);
    if (cached === undefined) return undefined;
    const now = (options.now ?? systemClock.now()).getTime();
    entries.delete(key);
    // Expired or not yet valid: the caller verifies again, which says exactly which certificate
    // and why (or finds another path, e.g. through a renewed authority).
    if (now < cached.validFrom || now > cached.validUntil) return undefined;
    // Re-inserted last: Map iteration order is the LRU order.
    entries.set(key, cached);
    this.hitCount++;
    return { id: cached.id, chain: [...cached.chain] };
  }

  private remember(entries: Map<string, Entry>, key: string, entry: Entry): void {
    entries.delete(key);
    entries.set(key, entry);
    while (entries.size > this.maxEntries) {
      const oldest = entries.keys().next();
      if (oldest.done === true) break;
      entries.delete(oldest.value);
    }
  }
}
