import type { X509Svid } from '@spire-csi/sdk/x509';
import { jwtSvidFileName } from '@spire-csi/sdk/layout';
import type { AgentX509Svid, BundleUpdate, JwtBundleUpdate } from '../identity/identity-backend.js';
import type { VolumeSpec } from './volume-spec.js';

/**
 * One consistent, validated view of a volume's identity: what the session hands to storage on
 * every change (and what a per-pod Workload API socket would serve).
 */
export interface VolumeState {
  readonly spec: VolumeSpec;
  /** As received from the agent (DER). */
  readonly svid: AgentX509Svid;
  /** The same SVID parsed and checked by the SDK. */
  readonly parsed: X509Svid;
  readonly bundles: BundleUpdate;
  /** Normalized trust domain names (no scheme), sorted. */
  readonly federatesWith: readonly string[];
  /** Present exactly when the volume asks for JWT audiences. */
  readonly jwt?: VolumeJwtState;
  /**
   * With all-svids: the pod's other SVIDs that passed the same checks as `svid`, in the agent's
   * order (invalid ones are left out of the generation).
   */
  readonly extras?: readonly VolumeExtraSvid[];
  readonly updatedAt: Date;
}

/** One more SVID of the pod, published next to the chosen one. */
export interface VolumeExtraSvid {
  readonly svid: AgentX509Svid;
  readonly parsed: X509Svid;
}

/** One JWT-SVID, fetched for one audience alone (its `aud` is exactly that audience). */
export interface VolumeJwtToken {
  readonly audience: string;
  /** A bearer credential: never logged. */
  readonly token: string;
  readonly spiffeId: string;
  /** The token's `exp`. */
  readonly expiresAt: Date;
}

/** The volume's current JWT-SVIDs, one per audience, and the JWT bundles to validate tokens with. */
export interface VolumeJwtState {
  /** One per audience of the spec, in the spec's order: a payload is written only with all of them. */
  readonly tokens: readonly VolumeJwtToken[];
  /** Trust domain name to JWKS bytes as received; already checked to be JWKS documents. */
  readonly bundles: JwtBundleUpdate;
}

/** identity.json's and the logs' `jwtExpiresAt`: the token that runs out first. */
export function earliestJwtExpiry(jwt: VolumeJwtState): Date {
  return new Date(Math.min(...jwt.tokens.map((t) => t.expiresAt.getTime())));
}

/**
 * Audience to the file its token is written to. One audience: `jwt-svid-file` (default
 * `jwt-svid.token`), as before per-audience files existed. Several: `jwt-svid.<encoded audience>.token`
 * each, and `jwt-svid-file` is not used (validation refuses it being set; an older record may
 * still carry one). Empty without audiences.
 */
export function jwtSvidFilesOf(spec: Pick<VolumeSpec, 'jwtAudiences' | 'jwtSvidFile'>): ReadonlyMap<string, string> {
  const [only] = spec.jwtAudiences;
  if (spec.jwtAudiences.length === 1 && only !== undefined) return new Map([[only, spec.jwtSvidFile]]);
  return new Map(spec.jwtAudiences.map((audience) => [audience, jwtSvidFileName(audience)]));
}
