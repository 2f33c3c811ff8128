import { status } from '@grpc/grpc-js';
import { SpiffeId } from '@spire-csi/sdk';
import type {
  Selector,
  WireFetchJwtSvidsRequest,
  WireJwtSvid,
  WireSubscribeToX509SvidsRequest,
  WireSubscribeToX509SvidsResponse,
} from '@spire-csi/driver/internal';
import type { IssuedSvid } from './ca.js';
import type { IssuedJwtSvid } from './jwt-authority.js';
import { entryKey } from './matcher.js';
import type { RegistrationEntry } from './registrations.js';

export interface RequestProblem {
  readonly code: status;
  readonly details: string;
}

/** Checks a SubscribeToX509SVIDs request the way SPIRE does, minus PID attestation (not offered here). */
export function checkSvidRequest(request: WireSubscribeToX509SvidsRequest): Selector[] | RequestProblem {
  return checkWorkload(request.selectors ?? [], request.pid ?? 0);
}

export interface JwtSvidRequest {
  readonly selectors: Selector[];
  readonly audiences: string[];
}

/** Checks a FetchJWTSVIDs request as SPIRE does: the audience first, then the workload. */
export function checkJwtSvidRequest(request: WireFetchJwtSvidsRequest): JwtSvidRequest | RequestProblem {
  const audiences = request.audience ?? [];
  if (audiences.length === 0) return { code: status.INVALID_ARGUMENT, details: 'audience must be specified' };
  const selectors = checkWorkload(request.selectors ?? [], request.pid ?? 0);
  if (!Array.isArray(selectors)) return selectors;
  return { selectors, audiences: [...audiences] };
}

function checkWorkload(selectors: readonly { type: string; value: string }[], pid: number): Selector[] | RequestProblem {
  if (pid !== 0 && selectors.length > 0) {
    return { code: status.INVALID_ARGUMENT, details: 'cannot use both selectors and pid' };
  }
  if (pid !== 0) {
    return {
      code: status.INVALID_ARGUMENT,
      details: 'dev-agent: pid-based requests are not supported (it cannot attest processes); send selectors',
    };
  }
  if (selectors.length === 0) return { code: status.INVALID_ARGUMENT, details: 'missing required selectors' };
  if (selectors.some((s) => !s.type || !s.value || s.type.includes(':'))) {
    return { code: status.INVALID_ARGUMENT, details: 'could not parse provided selectors' };
  }
  return selectors.map((s) => ({ type: s.type, value: s.value }));
}

export interface SvidResponse {
  readonly message: WireSubscribeToX509SvidsResponse;
  /** Changes exactly when the message would; lets a stream skip resending what it already has. */
  readonly fingerprint: string;
}

/**
 * The full current set for one subscriber: an SVID per matching entry and, as SPIRE does, the
 * federated trust domains those entries federate with and the agent holds bundles for.
 */
export function buildSvidResponse(
  entries: readonly RegistrationEntry[],
  issued: ReadonlyMap<string, IssuedSvid>,
  hasFederated: (trustDomain: string) => boolean,
): SvidResponse {
  const federates = new Set<string>();
  const x509_svids = entries.map((entry) => {
    for (const td of entry.federatesWith) if (hasFederated(td)) federates.add(td);
    const svid = issued.get(entryKey(entry));
    if (svid === undefined) throw new Error(`dev-agent: no SVID issued for ${entry.spiffeId}`);
    const id = SpiffeId.parse(entry.spiffeId);
    return {
      x509_svid: {
        cert_chain: svid.chainDer,
        id: { trust_domain: id.trustDomain.name, path: id.path },
        expires_at: String(Math.floor(svid.expiresAt.getTime() / 1000)),
        hint: entry.hint,
      },
      x509_svid_key: svid.keyDer,
    };
  });
  const federates_with = [...federates].sort().map((td) => `spiffe://${td}`);
  const fingerprint = JSON.stringify([
    x509_svids.map((s, i) => [entries[i]!.spiffeId, issued.get(entryKey(entries[i]!))!.serial, s.x509_svid.hint]),
    federates_with,
  ]);
  return { message: { x509_svids, federates_with }, fingerprint };
}

/** A FetchJWTSVIDs answer entry for one matched entry, shaped as SPIRE sends it. */
export function jwtSvidToWire(entry: RegistrationEntry, issued: IssuedJwtSvid): WireJwtSvid {
  const id = SpiffeId.parse(entry.spiffeId);
  return {
    token: issued.token,
    id: { trust_domain: id.trustDomain.name, path: id.path },
    expires_at: String(Math.floor(issued.expiresAt.getTime() / 1000)),
    issued_at: String(Math.floor(issued.issuedAt.getTime() / 1000)),
    hint: entry.hint,
  };
}
