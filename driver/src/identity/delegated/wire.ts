import { splitDer } from '@spire-csi/sdk/internal';
import { TrustDomain } from '@spire-csi/sdk/spiffeid';
import type { AgentJwtSvid, AgentX509Svid, BundleUpdate, JwtBundleUpdate, X509SvidUpdate } from '../identity-backend.js';
import type { Selector } from './selectors.js';
import { parseJwks } from '../jwks.js';

/**
 * Delegated Identity API messages as @grpc/proto-loader hands them over with the shared options
 * (keepCase, int64 as strings, bytes as Buffer, defaults filled in). Shared by the client and the
 * dev agent so both sides agree on one shape.
 */
export interface WireSelector {
  type: string;
  value: string;
}

export interface WireSpiffeId {
  trust_domain: string;
  path: string;
}

export interface WireX509Svid {
  cert_chain: Buffer[];
  id: WireSpiffeId | null;
  expires_at: string;
  hint: string;
}

export interface WireX509SvidWithKey {
  x509_svid: WireX509Svid | null;
  x509_svid_key: Buffer;
}

export interface WireSubscribeToX509SvidsRequest {
  selectors: WireSelector[];
  pid: number;
}

export interface WireSubscribeToX509SvidsResponse {
  x509_svids: WireX509SvidWithKey[];
  federates_with: string[];
}

export interface WireSubscribeToX509BundlesResponse {
  ca_certificates: Record<string, Buffer>;
}

export interface WireJwtSvid {
  token: string;
  id: WireSpiffeId | null;
  expires_at: string;
  issued_at: string;
  hint: string;
}

export interface WireFetchJwtSvidsRequest {
  audience: string[];
  selectors: WireSelector[];
  pid: number;
}

export interface WireFetchJwtSvidsResponse {
  svids: WireJwtSvid[];
}

export interface WireSubscribeToJwtBundlesResponse {
  bundles: Record<string, Buffer>;
}

export class WireError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`delegated identity: ${message}`, options);
    this.name = 'WireError';
  }
}

const SCHEME = 'spiffe://';

/** SPIRE keys bundles by `spiffe://<td>` although the proto says "trust domain name"; accept both. */
export function trustDomainOfBundleKey(key: string): string {
  return key.startsWith(SCHEME) ? key.slice(SCHEME.length) : key;
}

export function bundleUpdateFromWire(message: WireSubscribeToX509BundlesResponse): BundleUpdate {
  const out = new Map<string, Buffer>();
  for (const [key, der] of Object.entries(message.ca_certificates ?? {})) {
    const name = trustDomainOfBundleKey(key);
    if (name === '' || name.includes('/')) throw new WireError(`bundle key "${key}" is not a trust domain`);
    out.set(name, Buffer.from(der));
  }
  return out;
}

/**
 * Every entry must be a JWKS document; one that is not rejects the whole message, so the last good
 * set stays in use (as for X.509 bundles) instead of a trust domain silently losing its keys.
 */
export function jwtBundleUpdateFromWire(message: WireSubscribeToJwtBundlesResponse): JwtBundleUpdate {
  const out = new Map<string, Buffer>();
  for (const [key, jwks] of Object.entries(message.bundles ?? {})) {
    const name = trustDomainOfBundleKey(key);
    if (name === '' || name.includes('/')) throw new WireError(`JWT bundle key "${key}" is not a trust domain`);
    try {
      parseJwks(jwks);
    } catch (error) {
      throw new WireError(`JWT bundle for ${name}: ${(error as Error).message}`, { cause: error });
    }
    out.set(name, Buffer.from(jwks));
  }
  return out;
}

/** Throws WireError when an entry is structurally unusable; messages never quote the token. */
export function jwtSvidsFromWire(message: WireFetchJwtSvidsResponse): AgentJwtSvid[] {
  return (message.svids ?? []).map((svid, index) => {
    if (svid.id === null || svid.id === undefined || svid.id.trust_domain === '') {
      throw new WireError(`svids[${index}] has no SPIFFE ID`);
    }
    if (typeof svid.token !== 'string' || svid.token === '') throw new WireError(`svids[${index}] has no token`);
    return {
      token: svid.token,
      spiffeId: spiffeIdFromWire(svid.id, `svids[${index}]`),
      expiresAt: String(svid.expires_at ?? '0'),
      issuedAt: String(svid.issued_at ?? '0'),
      hint: svid.hint ?? '',
    };
  });
}

/**
 * Throws WireError (without key material in the message) when a message is structurally unusable.
 * `federates_with` entries become trust domain names here, once; an entry that is not a trust
 * domain ID is left out and handed to `onInvalidFederation` (it is not fatal to the SVIDs).
 */
export function svidUpdateFromWire(
  message: WireSubscribeToX509SvidsResponse,
  onInvalidFederation?: (entries: readonly string[]) => void,
): X509SvidUpdate {
  const svids = (message.x509_svids ?? []).map((item, index) => svidFromWire(item, index));
  const federation = federatedTrustDomains(message.federates_with ?? []);
  if (federation.invalid.length > 0) onInvalidFederation?.(federation.invalid);
  return { svids, federatesWith: federation.domains };
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

function svidFromWire(item: WireX509SvidWithKey, index: number): AgentX509Svid {
  const svid = item.x509_svid;
  if (svid === null || svid === undefined) throw new WireError(`x509_svids[${index}] has no x509_svid`);
  if (svid.id === null || svid.id === undefined || svid.id.trust_domain === '') {
    throw new WireError(`x509_svids[${index}] has no SPIFFE ID`);
  }
  const chainDer: Buffer[] = [];
  try {
    // Each element is normally one certificate; splitting also copes with an agent that
    // concatenates the chain into one element.
    for (const element of svid.cert_chain ?? []) {
      for (const cert of splitDer(element)) chainDer.push(Buffer.from(cert));
    }
  } catch (error) {
    throw new WireError(`x509_svids[${index}].cert_chain is not DER: ${(error as Error).message}`, { cause: error });
  }
  if (chainDer.length === 0) throw new WireError(`x509_svids[${index}] has an empty cert_chain`);
  if (!item.x509_svid_key || item.x509_svid_key.length === 0) {
    throw new WireError(`x509_svids[${index}] has no private key`);
  }
  return {
    spiffeId: spiffeIdFromWire(svid.id, `x509_svids[${index}]`),
    chainDer,
    keyDer: Buffer.from(item.x509_svid_key),
    expiresAt: String(svid.expires_at ?? '0'),
    hint: svid.hint ?? '',
  };
}

/**
 * Joins the proto's two halves. A path that does not start with '/' would merge into the trust
 * domain name ("a.org" + "evil.org/x"), so it is refused here rather than left to later checks.
 */
function spiffeIdFromWire(id: WireSpiffeId, field: string): string {
  const path = id.path ?? '';
  if (path !== '' && !path.startsWith('/')) {
    throw new WireError(`malformed SPIFFE ID in ${field}.id: path ${JSON.stringify(path.slice(0, 64))} must be empty or start with "/"`);
  }
  return `${SCHEME}${id.trust_domain}${path}`;
}

export function selectorsToWire(selectors: readonly Selector[]): WireSelector[] {
  return selectors.map((s) => ({ type: s.type, value: s.value }));
}
