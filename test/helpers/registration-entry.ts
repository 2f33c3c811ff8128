import type { RegistrationEntry } from '../../dev/src/dev-agent/registrations.js';

/**
 * A dev-agent registration entry written the way SPIRE's CLI shows selectors (`type:value`; the
 * value may itself hold colons, as in `k8s:node-name:node-1`).
 */
export function entry(spiffeId: string, selectors: readonly string[], federatesWith: readonly string[] = [], hint = ''): RegistrationEntry {
  return {
    spiffeId,
    selectors: selectors.map((s) => {
      const at = s.indexOf(':');
      return { type: s.slice(0, at), value: s.slice(at + 1) };
    }),
    federatesWith,
    hint,
  };
}
