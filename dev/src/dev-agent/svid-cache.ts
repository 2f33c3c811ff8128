import type { IssuedSvid } from './ca.js';
import { entryKey } from './matcher.js';
import type { RegistrationEntry } from './registrations.js';

interface Cached {
  readonly svid: IssuedSvid;
  readonly rotateAt: number;
  readonly generation: number;
}

/**
 * One SVID per registration entry, shared by every stream that matches it (a thousand pods in one
 * namespace cost one issuance per rotation, not a thousand). An SVID is replaced once past half of
 * its lifetime, as SPIRE agents do, or when the cache is invalidated (CA rotation, rotate-now).
 */
export class SvidCache {
  private readonly items = new Map<string, Cached>();
  #generation = 0;
  #issued = 0;

  constructor(
    private readonly issue: (entry: RegistrationEntry) => Promise<IssuedSvid>,
    private readonly now: () => number,
  ) {}

  /** Returns a current SVID for each entry (keyed by entryKey), issuing the missing or stale ones. */
  async ensure(entries: readonly RegistrationEntry[]): Promise<Map<string, IssuedSvid>> {
    const unique = new Map(entries.map((entry) => [entryKey(entry), entry] as const));
    const now = this.now();
    await Promise.all(
      [...unique].map(async ([key, entry]) => {
        const cached = this.items.get(key);
        if (cached && cached.generation === this.#generation && now < cached.rotateAt) return;
        const generation = this.#generation;
        const svid = await this.issue(entry);
        this.#issued++;
        const lifetime = svid.expiresAt.getTime() - svid.issuedAt.getTime();
        this.items.set(key, { svid, rotateAt: svid.issuedAt.getTime() + lifetime / 2, generation });
      }),
    );
    const out = new Map<string, IssuedSvid>();
    for (const key of unique.keys()) out.set(key, this.items.get(key)!.svid);
    return out;
  }

  /** Whether some cached SVID has reached the time it is to be replaced. */
  rotationDue(): boolean {
    const next = this.nextRotationAt();
    return next !== null && next <= this.now();
  }

  /** Moves on every invalidateAll(). */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Moves on every issuance. Several hubs share this cache: one that finds it moved since its last
   * full pass knows another hub rotated an SVID its streams have not received yet.
   */
  get issuedCount(): number {
    return this.#issued;
  }

  /** Every SVID is reissued on its next use. */
  invalidateAll(): void {
    this.#generation++;
  }

  /** The SVID of this entry (by entryKey) is reissued on its next use (rotate one identity on demand). */
  forget(key: string): void {
    this.items.delete(key);
  }

  /** Forgets entries that are no longer registered, so they stop driving rotations. */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const key of this.items.keys()) if (!keys.has(key)) this.items.delete(key);
  }

  /** When the earliest cached SVID reaches half-life; null when nothing is cached. */
  nextRotationAt(): number | null {
    let next: number | null = null;
    for (const item of this.items.values()) if (next === null || item.rotateAt < next) next = item.rotateAt;
    return next;
  }
}
