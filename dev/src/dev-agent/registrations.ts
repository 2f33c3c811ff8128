import { SpiffeId, TrustDomain } from '@spire-csi/sdk';
import { parseSelector, formatSelector, type Selector } from '@spire-csi/driver/internal';

/**
 * The dev agent's registration file: the few facts a SPIRE server would hold for this node.
 *
 * ```json
 * {
 *   "entries": [
 *     { "spiffeId": "spiffe://example.org/ns/default/sa/web",
 *       "selectors": ["k8s:ns:default", "k8s:sa:web"],
 *       "federatesWith": ["other.org"],
 *       "hint": "web" }
 *   ],
 *   "federatedTrustDomains": ["other.org"]
 * }
 * ```
 *
 * - `entries` (required, may be empty). Each entry: `spiffeId` (required; a workload ID in the
 *   agent's trust domain), `selectors` (required, at least one `type:value`; the type ends at the
 *   first colon, so `k8s:ns:default` is type `k8s`, value `ns:default`), `federatesWith` (optional
 *   trust domain names, bare or `spiffe://`; each must be listed in `federatedTrustDomains`),
 *   `hint` (optional string, sent as the SVID hint).
 * - `federatedTrustDomains` (optional): foreign trust domains the agent holds bundles for; the dev
 *   agent makes a CA for each.
 * - Unknown keys are errors, so a typo never silently drops a selector.
 */
export interface RegistrationEntry {
  readonly spiffeId: string;
  readonly selectors: readonly Selector[];
  /** Trust domain names without `spiffe://`. */
  readonly federatesWith: readonly string[];
  readonly hint: string;
}

export interface Registrations {
  readonly entries: readonly RegistrationEntry[];
  /** Trust domain names without `spiffe://`. */
  readonly federatedTrustDomains: readonly string[];
}

export class RegistrationError extends Error {
  constructor(message: string) {
    super(`registrations: ${message}`);
    this.name = 'RegistrationError';
  }
}

export function parseRegistrations(text: string, trustDomain: string): Registrations {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new RegistrationError(`not valid JSON: ${(error as Error).message}`);
  }
  return validateRegistrations(value, trustDomain);
}

export function validateRegistrations(value: unknown, trustDomain: string): Registrations {
  const own = TrustDomain.parse(trustDomain).name;
  const root = asObject(value, 'the file', ['entries', 'federatedTrustDomains']);
  const federated = trustDomainList(root.federatedTrustDomains, 'federatedTrustDomains', own);
  if (!Array.isArray(root.entries)) throw new RegistrationError('"entries" must be an array of entries');
  const entries = root.entries.map((raw: unknown, index) => validateEntry(raw, `entries[${index}]`, own, federated));
  return { entries, federatedTrustDomains: federated };
}

function validateEntry(raw: unknown, where: string, own: string, federated: readonly string[]): RegistrationEntry {
  const entry = asObject(raw, where, ['spiffeId', 'selectors', 'federatesWith', 'hint']);
  if (typeof entry.spiffeId !== 'string') throw new RegistrationError(`${where}.spiffeId must be a string`);
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(entry.spiffeId);
  } catch (error) {
    throw new RegistrationError(`${where}.spiffeId: ${(error as Error).message}`);
  }
  if (id.trustDomain.name !== own) {
    throw new RegistrationError(`${where}.spiffeId "${entry.spiffeId}" is not in the agent's trust domain "${own}"`);
  }
  if (id.path === '') throw new RegistrationError(`${where}.spiffeId "${entry.spiffeId}" must have a path`);

  if (!Array.isArray(entry.selectors) || entry.selectors.length === 0) {
    throw new RegistrationError(`${where}.selectors must be a non-empty array of "type:value" strings`);
  }
  const seen = new Set<string>();
  const selectors = entry.selectors.map((text: unknown, i) => {
    const field = `${where}.selectors[${i}]`;
    if (typeof text !== 'string') throw new RegistrationError(`${field} must be a string`);
    let selector: Selector;
    try {
      selector = parseSelector(text);
    } catch (error) {
      throw new RegistrationError(`${field}: ${(error as Error).message}`);
    }
    const key = formatSelector(selector);
    if (seen.has(key)) throw new RegistrationError(`${field}: "${text}" is listed twice`);
    seen.add(key);
    return selector;
  });

  const federatesWith = trustDomainList(entry.federatesWith, `${where}.federatesWith`, own);
  for (const [i, td] of federatesWith.entries()) {
    if (!federated.includes(td)) {
      throw new RegistrationError(
        `${where}.federatesWith[${i}]: "${td}" is not in federatedTrustDomains; add it there so the agent has its bundle`,
      );
    }
  }
  if (entry.hint !== undefined && typeof entry.hint !== 'string') {
    throw new RegistrationError(`${where}.hint must be a string`);
  }
  return { spiffeId: id.toString(), selectors, federatesWith, hint: entry.hint ?? '' };
}

function trustDomainList(raw: unknown, where: string, own: string): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new RegistrationError(`${where} must be an array of trust domain names`);
  const out: string[] = [];
  raw.forEach((text: unknown, i) => {
    const field = `${where}[${i}]`;
    if (typeof text !== 'string') throw new RegistrationError(`${field} must be a string`);
    let name: string;
    try {
      name = TrustDomain.parse(text).name;
    } catch (error) {
      throw new RegistrationError(`${field}: ${(error as Error).message}`);
    }
    if (name === own) throw new RegistrationError(`${field}: "${text}" is the agent's own trust domain`);
    if (out.includes(name)) throw new RegistrationError(`${field}: "${text}" is listed twice`);
    out.push(name);
  });
  return out;
}

function asObject(raw: unknown, where: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new RegistrationError(`${where} must be a JSON object`);
  }
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) {
      throw new RegistrationError(`${where}: unknown field "${key}"; valid fields are ${allowed.join(', ')}`);
    }
  }
  return raw as Record<string, unknown>;
}
