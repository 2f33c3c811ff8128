import type { Selector } from '@spire-csi/driver/internal';
import type { RegistrationEntry } from './registrations.js';

/** Unambiguous: `{k8s:ns, default}` and `{k8s, ns:default}` are different selectors. */
function selectorKey(selector: Selector): string {
  return JSON.stringify([selector.type, selector.value]);
}

/**
 * SPIRE's rule: an entry applies to a workload when every one of the entry's selectors is among
 * the workload's selectors (a subset), so an entry for `k8s:ns:default` covers every pod there.
 */
export function matchEntries(
  entries: readonly RegistrationEntry[],
  selectors: readonly Selector[],
): RegistrationEntry[] {
  const have = new Set(selectors.map(selectorKey));
  return entries.filter((entry) => entry.selectors.length > 0 && entry.selectors.every((s) => have.has(selectorKey(s))));
}

export function entryMatches(entry: RegistrationEntry, selectors: readonly Selector[]): boolean {
  return matchEntries([entry], selectors).length === 1;
}

/** Identifies an entry across reloads: same ID and same selectors is the same entry. */
export function entryKey(entry: RegistrationEntry): string {
  return JSON.stringify([entry.spiffeId, entry.selectors.map(selectorKey).sort()]);
}
