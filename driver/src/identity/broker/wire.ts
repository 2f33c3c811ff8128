import { decodeJwt } from 'jose';
import { SpiffeId } from '@spire-csi/sdk/spiffeid';
import type { AgentJwtSvid, AgentX509Svid, JwtBundleUpdate, X509SvidUpdate } from '../identity-backend.js';
import {
  WireError,
  bundleKeyTrustDomain,
  certificatesFromWire,
  jwtBundleMapFromWire,
  spiffeIdFromWire,
} from '../wire-checks.js';
import type { WireWorkloadReference } from './reference.js';

/**
 * SPIFFE Broker API messages as @grpc/proto-loader hands them over with the shared options
 * (keepCase, int64 as strings, bytes as Buffer, defaults filled in). Shared by the client and the
 * dev agent so both sides agree on one shape.
 */
export interface WireBrokerX509Svid {
  spiffe_id: string;
  /** DER chain, leaf first, concatenated. */
  x509_svid: Buffer;
  /** PKCS#8 DER. */
  x509_svid_key: Buffer;
  /** DER CA certificates of the SVID's own trust domain, concatenated. */
  bundle: Buffer;
  hint: string;
}

export interface WireSubscribeToX509SvidRequest {
  reference: WireWorkloadReference | null;
}

export interface WireSubscribeToX509SvidResponse {
  svids: WireBrokerX509Svid[];
  crl: Buffer[];
  /** `spiffe://<td>` → DER CA certificates. */
  federated_bundles: Record<string, Buffer>;
}

export interface WireFetchJwtSvidRequest {
  reference: WireWorkloadReference | null;
  audience: string[];
  spiffe_id: string;
}

export interface WireBrokerJwtSvid {
  spiffe_id: string;
  /** The compact JWS. Never logged. */
  svid: string;
  hint: string;
}

export interface WireFetchJwtSvidResponse {
  svids: WireBrokerJwtSvid[];
}

export interface WireSubscribeToJwtBundlesRequest {
  reference: WireWorkloadReference | null;
}

export interface WireSubscribeToJwtBundlesResponse {
  bundles: Record<string, Buffer>;
}

/**
 * One pod's full X.509 state. The standard's mandatory fields (§4.6) must not have default values:
 * a message with one is an error that discards the whole message (the caller keeps the last good
 * state). Zero SVIDs are not an error: SPIRE sends that while no registration entry matches the pod.
 * The pod's bundles come along: each SVID's own trust domain's `bundle`, plus `federated_bundles`,
 * whose trust domains become `federatesWith`. Messages never include key material.
 */
export function x509UpdateFromBrokerWire(message: WireSubscribeToX509SvidResponse): X509SvidUpdate {
  const svids: AgentX509Svid[] = [];
  const own = new Map<string, Buffer>();
  (message.svids ?? []).forEach((item, index) => {
    const field = `svids[${index}]`;
    for (const name of ['spiffe_id', 'x509_svid', 'x509_svid_key', 'bundle'] as const) {
      if (item[name] === undefined || item[name] === null || item[name].length === 0) {
        throw new WireError(`${field}.${name} is empty, but the Broker API requires it; the message is discarded`);
      }
    }
    const spiffeId = spiffeIdFromWire(item.spiffe_id, `${field}.spiffe_id`);
    const chainDer = certificatesFromWire([item.x509_svid], field, 'x509_svid');
    // The bundle is checked as certificates when it is used (its trust domain and anchors), like a shared one.
    certificatesFromWire([item.bundle], field, 'bundle');
    const td = SpiffeId.parse(spiffeId).trustDomain.name;
    // SVIDs of one trust domain carry the same bundle; the first is kept.
    if (!own.has(td)) own.set(td, Buffer.from(item.bundle));
    svids.push({ spiffeId, chainDer, keyDer: Buffer.from(item.x509_svid_key), hint: item.hint ?? '' });
  });
  const bundles = new Map<string, Buffer>();
  const federatesWith: string[] = [];
  for (const [key, der] of Object.entries(message.federated_bundles ?? {})) {
    const td = bundleKeyTrustDomain(key, 'federated_bundles');
    if (der === undefined || der === null || der.length === 0) {
      throw new WireError(`federated_bundles["${key.slice(0, 128)}"] is empty; the message is discarded`);
    }
    // A pod's own trust domain is not federated with itself; its SVID's bundle is the one that counts.
    if (own.has(td)) continue;
    bundles.set(td, Buffer.from(der));
    federatesWith.push(td);
  }
  for (const [td, der] of own) bundles.set(td, der);
  return { svids, federatesWith: [...new Set(federatesWith)].sort(), bundles };
}

/**
 * The Broker API sends no expiry or issue time with a JWT-SVID: they are read from the token's own
 * claims (unverified here; the session checks the token before writing it). Messages never quote
 * the token.
 */
export function jwtSvidsFromBrokerWire(message: WireFetchJwtSvidResponse): AgentJwtSvid[] {
  return (message.svids ?? []).map((item, index) => {
    const field = `svids[${index}]`;
    if (typeof item.spiffe_id !== 'string' || item.spiffe_id === '') {
      throw new WireError(`${field}.spiffe_id is empty, but the Broker API requires it; the response is discarded`);
    }
    if (typeof item.svid !== 'string' || item.svid === '') {
      throw new WireError(`${field}.svid is empty, but the Broker API requires it; the response is discarded`);
    }
    const spiffeId = spiffeIdFromWire(item.spiffe_id, `${field}.spiffe_id`);
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(item.svid);
    } catch (error) {
      // jose's messages describe the structure only; they never echo the input.
      throw new WireError(`${field}.svid is not a JWT: ${(error as Error).message}`, { cause: error });
    }
    return {
      token: item.svid,
      spiffeId,
      expiresAt: typeof claims.exp === 'number' ? String(Math.trunc(claims.exp)) : '0',
      issuedAt: typeof claims.iat === 'number' ? String(Math.trunc(claims.iat)) : '0',
      hint: item.hint ?? '',
    };
  });
}

/** One pod's JWT bundles; a document that is not a JWKS rejects the whole message. */
export function jwtBundlesFromBrokerWire(message: WireSubscribeToJwtBundlesResponse): JwtBundleUpdate {
  return jwtBundleMapFromWire(message.bundles, 'bundles');
}
