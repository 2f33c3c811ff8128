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
  return entries.filter((entry) => {
    const keys = selectorKeysOf(entry);
    return keys.length > 0 && keys.every((key) => have.has(key));
  });
}

// Entries are immutable once parsed, and one registration set is matched against every stream:
// keys are computed once per entry, not once per stream and push.
const selectorKeys = new WeakMap<RegistrationEntry, readonly string[]>();
const entryKeys = new WeakMap<RegistrationEntry, string>();

function selectorKeysOf(entry: RegistrationEntry): readonly string[] {
  let keys = selectorKeys.get(entry);
  if (keys === undefined) {
    keys = entry.selectors.map(selectorKey);
    selectorKeys.set(entry, keys);
  }
  return keys;
}

export function entryMatches(entry: RegistrationEntry, selectors: readonly Selector[]): boolean {
  return matchEntries([entry], selectors).length === 1;
}

/** Identifies an entry across reloads: same ID and same selectors is the same entry. */
export function entryKey(entry: RegistrationEntry): string {
  let key = entryKeys.get(entry);
  if (key === undefined) {
    key = JSON.stringify([entry.spiffeId, [...selectorKeysOf(entry)].sort()]);
    entryKeys.set(entry, key);
  }
  return key;
}
