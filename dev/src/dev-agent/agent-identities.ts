import type { IssuedSvid } from './ca.js';
import { entryKey } from './matcher.js';
import type { RegistrationEntry } from './registrations.js';
import { SvidCache } from './svid-cache.js';

/**
 * `workload`: the driver's own SVID, served on the Workload API. `brokerServer`: the SVID the
 * Broker endpoint presents in its TLS handshake.
 */
export type AgentIdentityName = 'workload' | 'brokerServer';

/**
 * The SVIDs the agent holds for itself and the driver, outside the registrations: issued by the
 * current CA, reissued at half-life like every SVID (the same SvidCache rules), on CA rotation and
 * on demand. Each name gets its own SVID even when two names share a SPIFFE ID.
 */
export class AgentIdentities {
  private readonly cache: SvidCache;
  private readonly entries = new Map<AgentIdentityName, RegistrationEntry>();
  private readonly latest = new Map<AgentIdentityName, IssuedSvid>();

  constructor(
    ids: Partial<Record<AgentIdentityName, string>>,
    issue: (spiffeId: string) => Promise<IssuedSvid>,
    now: () => number,
  ) {
    for (const [name, spiffeId] of Object.entries(ids) as [AgentIdentityName, string | undefined][]) {
      // A selector no registration can carry keeps these apart from entries and from each other.
      if (spiffeId !== undefined) this.entries.set(name, { spiffeId, selectors: [{ type: 'dev-agent', value: name }], federatesWith: [], hint: '' });
    }
    this.cache = new SvidCache((entry) => issue(entry.spiffeId), now);
  }

  /** The pseudo-entry an identity is issued for (its SPIFFE ID and empty hint), if configured. */
  entry(name: AgentIdentityName): RegistrationEntry | undefined {
    return this.entries.get(name);
  }

  /** Issues what is missing or due; afterwards current() returns fresh SVIDs. */
  async ensure(): Promise<void> {
    const issued = await this.cache.ensure([...this.entries.values()]);
    for (const [name, entry] of this.entries) this.latest.set(name, issued.get(entryKey(entry))!);
  }

  /** The SVID as of the last ensure(); a new object exactly when it was reissued. */
  current(name: AgentIdentityName): IssuedSvid | undefined {
    return this.latest.get(name);
  }

  /** Reissued on the next ensure(). */
  rotate(name: AgentIdentityName): void {
    const entry = this.entries.get(name);
    if (entry) this.cache.forget(entryKey(entry));
  }

  rotateAll(): void {
    this.cache.invalidateAll();
  }

  nextRotationAt(): number | null {
    return this.cache.nextRotationAt();
  }
}
