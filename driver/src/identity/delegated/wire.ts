import type { AgentJwtSvid, AgentX509Svid, BundleUpdate, JwtBundleUpdate, X509SvidUpdate } from '../identity-backend.js';
import type { Selector } from './selectors.js';
import {
  WireError,
  certificatesFromWire,
  federatedTrustDomains,
  jwtBundleMapFromWire,
  spiffeIdFromParts,
  x509BundleMapFromWire,
} from '../wire-checks.js';

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

export { WireError, federatedTrustDomains, trustDomainOfBundleKey } from '../wire-checks.js';

export function bundleUpdateFromWire(message: WireSubscribeToX509BundlesResponse): BundleUpdate {
  return x509BundleMapFromWire(message.ca_certificates, 'bundle');
}

/** Every entry must be a JWKS document; one that is not rejects the whole message (the last good set stays). */
export function jwtBundleUpdateFromWire(message: WireSubscribeToJwtBundlesResponse): JwtBundleUpdate {
  return jwtBundleMapFromWire(message.bundles, 'JWT bundle');
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
      spiffeId: spiffeIdFromParts(svid.id.trust_domain, svid.id.path ?? '', `svids[${index}]`),
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

function svidFromWire(item: WireX509SvidWithKey, index: number): AgentX509Svid {
  const svid = item.x509_svid;
  if (svid === null || svid === undefined) throw new WireError(`x509_svids[${index}] has no x509_svid`);
  if (svid.id === null || svid.id === undefined || svid.id.trust_domain === '') {
    throw new WireError(`x509_svids[${index}] has no SPIFFE ID`);
  }
  const chainDer = certificatesFromWire(svid.cert_chain ?? [], `x509_svids[${index}]`, 'cert_chain');
  if (!item.x509_svid_key || item.x509_svid_key.length === 0) {
    throw new WireError(`x509_svids[${index}] has no private key`);
  }
  return {
    spiffeId: spiffeIdFromParts(svid.id.trust_domain, svid.id.path ?? '', `x509_svids[${index}]`),
    chainDer,
    keyDer: Buffer.from(item.x509_svid_key),
    hint: svid.hint ?? '',
  };
}

export function selectorsToWire(selectors: readonly Selector[]): WireSelector[] {
  return selectors.map((s) => ({ type: s.type, value: s.value }));
}
