import type { status } from '@grpc/grpc-js';

export interface Selector {
  readonly type: string;
  readonly value: string;
}

/** One X.509-SVID as the agent sends it, decoded from the wire but not yet validated. */
export interface AgentX509Svid {
  readonly spiffeId: string;
  /** DER certificates, leaf first. */
  readonly chainDer: readonly Buffer[];
  /** PKCS#8 DER. Never logged. */
  readonly keyDer: Buffer;
  /** Unix seconds (int64 kept as a string to stay lossless). */
  readonly expiresAt: string;
  readonly hint: string;
}

export interface X509SvidUpdate {
  readonly svids: readonly AgentX509Svid[];
  /** As sent by SPIRE: `spiffe://<td>`. */
  readonly federatesWith: readonly string[];
}

/** Trust domain name (no scheme) to concatenated DER CA certificates. */
export type BundleUpdate = ReadonlyMap<string, Buffer>;

/** One JWT-SVID as FetchJWTSVIDs returns it, not yet checked. */
export interface AgentJwtSvid {
  /** The compact JWS. A bearer credential: never logged, never put in an error message. */
  readonly token: string;
  readonly spiffeId: string;
  /** Unix seconds (int64 kept as a string to stay lossless). */
  readonly expiresAt: string;
  readonly issuedAt: string;
  readonly hint: string;
}

/**
 * Trust domain name (no scheme) to the JWKS document exactly as the agent sent it (JSON with a
 * `keys` array, checked on receipt).
 */
export type JwtBundleUpdate = ReadonlyMap<string, Buffer>;

export type AgentErrorKind = 'permission-denied' | 'unavailable' | 'other';

export class AgentError extends Error {
  readonly code: status;
  readonly kind: AgentErrorKind;

  constructor(code: status, kind: AgentErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentError';
    this.code = code;
    this.kind = kind;
  }
}

export interface X509SvidHandlers {
  onUpdate(update: X509SvidUpdate): void;
  onError?(error: AgentError): void;
}

export interface Subscription {
  close(): void;
}

/**
 * Where a volume's identity comes from. The Delegated Identity client implements it; the volume
 * manager depends only on this seam, so tests and future sources slot in without touching it.
 */
export interface IdentityProvider {
  /** Shared bundle stream; a new listener immediately receives the latest bundles if any. */
  watchBundles(listener: (bundles: BundleUpdate) => void): () => void;
  watchX509Svids(selectors: readonly Selector[], handlers: X509SvidHandlers): Subscription;
  /**
   * One FetchJWTSVIDs call: a JWT-SVID per registration entry matching the selectors, each for all
   * `audiences` (at least one). Rejects with AgentError; an empty list means no entry matches yet.
   */
  fetchJwtSvids(selectors: readonly Selector[], audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]>;
  /** Shared JWT bundle stream, opened on first use; a new listener immediately receives the latest bundles if any. */
  watchJwtBundles(listener: (bundles: JwtBundleUpdate) => void): () => void;
  /** True while the agent answers (the bundle stream is established). */
  readonly connected: boolean;
  on(event: 'state', listener: (connected: boolean) => void): unknown;
  off(event: 'state', listener: (connected: boolean) => void): unknown;
  close(): Promise<void>;
}
