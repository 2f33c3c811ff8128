import { createHash } from 'node:crypto';
import type { X509Certificate } from 'node:crypto';
import { isWithinValidity } from '@spire-csi/sdk/internal';
import { SpiffeId } from '@spire-csi/sdk/spiffeid';
import type { X509Svid } from '@spire-csi/sdk/x509';
import type { AgentX509Svid, BundleUpdate } from '../identity/identity-backend.js';
import { checkAgentSvid, validateAgentSvid, type ValidateOptions } from './agent-svid.js';

export const DEFAULT_SVID_CACHE_ENTRIES = 64;

/** A validated SVID and the fingerprint of everything its validation (and the files) depend on. */
export interface ValidatedSvid {
  /** Shared by every volume that received the same SVID and bundles; immutable. */
  readonly svid: X509Svid;
  /** Hash of the claimed ID, chain, key and the own and federated bundles (never the bytes themselves). */
  readonly fingerprint: string;
}

interface Entry {
  readonly result: ValidatedSvid;
  /** The chain as verified up to a bundle authority: a hit re-checks its validity periods. */
  readonly path: readonly X509Certificate[];
}

export interface SvidValidationCacheOptions {
  /** Most entries kept, least recently used dropped first. Default 64. */
  readonly maxEntries?: number;
}

/**
 * Every volume of one registration entry receives the same SVID, so a rotation hands the manager
 * a thousand identical (chain, key, bundles) inputs: parsing and verifying once is enough. Keyed by
 * a hash of exactly the bytes validation reads; a hit still re-checks everything that depends on
 * the clock (the leaf not expired, every certificate of the verified path within its validity), and
 * falls back to a full validation, with its exact error, when that fails. Only successes are kept.
 * Entries hold parsed keys in memory only; nothing here is logged. Bounded, LRU.
 */
export class SvidValidationCache {
  readonly maxEntries: number;
  private readonly entries = new Map<string, Entry>();
  private hitCount = 0;
  private missCount = 0;

  constructor(options: SvidValidationCacheOptions = {}) {
    const max = options.maxEntries ?? DEFAULT_SVID_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`svid-validation-cache: maxEntries must be a positive integer, got ${String(max)}`);
    this.maxEntries = max;
  }

  get size(): number {
    return this.entries.size;
  }

  get stats(): { hits: number; misses: number } {
    return { hits: this.hitCount, misses: this.missCount };
  }

  /** Same contract as validateAgentSvid (same errors), plus the fingerprint of the inputs. */
  validate(svid: AgentX509Svid, bundles: BundleUpdate, options: ValidateOptions): ValidatedSvid {
    let own: string;
    try {
      own = SpiffeId.parse(svid.spiffeId).trustDomain.name;
    } catch {
      // Let the validator produce its exact error for a malformed ID.
      this.missCount++;
      return { svid: validateAgentSvid(svid, bundles, options), fingerprint: '' };
    }
    const federated = options.federatesWith ?? [];
    const fingerprint = svidFingerprint(svid, bundles, own, federated);
    const cached = this.entries.get(fingerprint);
    if (cached !== undefined && stillValid(cached, options.now)) {
      this.hitCount++;
      // Refresh its place in the LRU order.
      this.entries.delete(fingerprint);
      this.entries.set(fingerprint, cached);
      return cached.result;
    }
    this.missCount++;
    const checked = checkAgentSvid(svid, bundles, options);
    const result = { svid: checked.svid, fingerprint };
    this.entries.delete(fingerprint);
    this.entries.set(fingerprint, { result, path: checked.path });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return result;
  }

  clear(): void {
    this.entries.clear();
  }
}

function stillValid(entry: Entry, now: Date): boolean {
  if (entry.result.svid.notAfter.getTime() <= now.getTime()) return false;
  return entry.path.every((cert) => isWithinValidity(cert, now));
}

/**
 * Hash of exactly what validation and the published files depend on: the claimed ID, the chain,
 * the key, and each of the own and federated trust domains' bundle bytes (empty when absent).
 * Length-prefixed, so no two different inputs share a serialization.
 */
export function svidFingerprint(svid: Pick<AgentX509Svid, 'spiffeId' | 'chainDer' | 'keyDer'>, bundles: BundleUpdate, own: string, federated: readonly string[]): string {
  const hash = createHash('sha256');
  const field = (data: Buffer | string): void => {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    hash.update(`${bytes.length}:`).update(bytes);
  };
  field(svid.spiffeId);
  hash.update(`${svid.chainDer.length};`);
  for (const der of svid.chainDer) field(der);
  field(svid.keyDer);
  for (const td of [own, ...federated]) {
    field(td);
    field(bundles.get(td) ?? '');
  }
  return hash.digest('hex');
}
