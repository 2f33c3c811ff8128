import type { X509Svid } from '@spire-csi/sdk';
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
  readonly updatedAt: Date;
}

/** The volume's current JWT-SVID and the JWT bundles to validate tokens with. */
export interface VolumeJwtState {
  /** A bearer credential: never logged. */
  readonly token: string;
  readonly spiffeId: string;
  /** The token's `exp`. */
  readonly expiresAt: Date;
  readonly audiences: readonly string[];
  /** Trust domain name to JWKS bytes as received; already checked to be JWKS documents. */
  readonly bundles: JwtBundleUpdate;
}
