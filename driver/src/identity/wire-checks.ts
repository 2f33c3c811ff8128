import { splitDer } from '@spire-csi/sdk/internal';
import { SpiffeId, TrustDomain } from '@spire-csi/sdk/spiffeid';
import type { BundleUpdate, JwtBundleUpdate } from './identity-backend.js';
import { parseJwks } from './jwks.js';

/**
 * The checks every agent API's wire layer applies where data enters the driver (Delegated Identity
 * API and Broker API alike), so both hand the session the same shapes with the same guarantees.
 */
export class WireError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`wire: ${message}`, options);
    this.name = 'WireError';
  }
}

const SCHEME = 'spiffe://';

/** SPIRE keys bundles by `spiffe://<td>` although some protos say "trust domain name"; accept both. */
export function trustDomainOfBundleKey(key: string): string {
  return key.startsWith(SCHEME) ? key.slice(SCHEME.length) : key;
}

/** The trust domain name of a bundle map key; `what` names the map in the error. */
export function bundleKeyTrustDomain(key: string, what: string): string {
  const name = trustDomainOfBundleKey(key);
  if (name === '' || name.includes('/')) throw new WireError(`${what} key "${key.slice(0, 128)}" is not a trust domain`);
  return name;
}

/** A map of trust domain → concatenated DER CA certificates, keys normalized to names. */
export function x509BundleMapFromWire(map: Readonly<Record<string, Buffer>> | undefined, what: string): BundleUpdate {
  const out = new Map<string, Buffer>();
  for (const [key, der] of Object.entries(map ?? {})) out.set(bundleKeyTrustDomain(key, what), Buffer.from(der));
  return out;
}

/**
 * Every entry must be a JWKS document; one that is not rejects the whole message, so the last good
 * set stays in use (as for X.509 bundles) instead of a trust domain silently losing its keys.
 */
export function jwtBundleMapFromWire(map: Readonly<Record<string, Buffer>> | undefined, what: string): JwtBundleUpdate {
  const out = new Map<string, Buffer>();
  for (const [key, jwks] of Object.entries(map ?? {})) {
    const name = bundleKeyTrustDomain(key, what);
    try {
      parseJwks(jwks);
    } catch (error) {
      throw new WireError(`${what} for ${name}: ${(error as Error).message}`, { cause: error });
    }
    out.set(name, Buffer.from(jwks));
  }
  return out;
}

/**
 * DER certificates, leaf first, from the wire's elements. Each element is normally one certificate
 * (or, in the Broker and Workload APIs, the whole chain concatenated); splitting copes with both.
 */
export function certificatesFromWire(elements: readonly Buffer[], owner: string, field: string): Buffer[] {
  const chain: Buffer[] = [];
  try {
    for (const element of elements) {
      for (const cert of splitDer(element)) chain.push(Buffer.from(cert));
    }
  } catch (error) {
    throw new WireError(`${owner}.${field} is not DER: ${(error as Error).message}`, { cause: error });
  }
  if (chain.length === 0) throw new WireError(`${owner} has an empty ${field}`);
  return chain;
}

/**
 * Joins the Delegated API's two halves. A path that does not start with '/' would merge into the
 * trust domain name ("a.org" + "evil.org/x"), so it is refused here rather than left to later checks.
 */
export function spiffeIdFromParts(trustDomain: string, path: string, field: string): string {
  if (path !== '' && !path.startsWith('/')) {
    throw new WireError(`malformed SPIFFE ID in ${field}.id: path ${JSON.stringify(path.slice(0, 64))} must be empty or start with "/"`);
  }
  return `${SCHEME}${trustDomain}${path}`;
}

/** A SPIFFE ID sent as one string (Broker and Workload APIs), checked with every SPIFFE rule. */
export function spiffeIdFromWire(text: string, field: string): string {
  try {
    return SpiffeId.parse(text).toString();
  } catch (error) {
    throw new WireError(`${field} is not a SPIFFE ID (${JSON.stringify(text.slice(0, 128))}): ${(error as Error).message}`, { cause: error });
  }
}

/** Trust domain names from `spiffe://<td>` IDs, deduplicated and sorted, and the entries that are not such IDs. */
export function federatedTrustDomains(list: readonly string[]): { domains: string[]; invalid: string[] } {
  const domains = new Set<string>();
  const invalid: string[] = [];
  for (const entry of list) {
    try {
      domains.add(TrustDomain.parse(entry).name);
    } catch {
      invalid.push(entry);
    }
  }
  return { domains: [...domains].sort(), invalid };
}
