import type { status } from '@grpc/grpc-js';
import type { PodReference } from './pod-reference.js';

/** One X.509-SVID as the agent sends it, decoded from the wire but not yet validated. */
export interface AgentX509Svid {
  readonly spiffeId: string;
  /** DER certificates, leaf first. */
  readonly chainDer: readonly Buffer[];
  /** PKCS#8 DER. Never logged. */
  readonly keyDer: Buffer;
  readonly hint: string;
}

export interface X509SvidUpdate {
  readonly svids: readonly AgentX509Svid[];
  /** Trust domain names (no scheme), checked, deduplicated and sorted where the data entered. */
  readonly federatesWith: readonly string[];
  /**
   * The X.509 bundles for this pod alone (the Broker API sends them with each pod's SVIDs): its
   * SVIDs' own trust domains and `federatesWith`. When present, the shared bundle stream does not
   * apply to this update.
   */
  readonly bundles?: BundleUpdate;
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

/**
 * - `permission-denied`: the driver may not use the API (retried: an operator may fix the agent's config);
 * - `unavailable`: the agent or its endpoint cannot be reached, or refused the connection;
 * - `refused`: the agent answered that this request can never succeed as sent (the Broker API's
 *   InvalidArgument, or PermissionDenied for the driver itself): a publish waiting for it fails at once;
 * - `not-entitled`: the pod exists but no registration entry gives it an identity (yet);
 * - `other`: anything else, retried.
 */
export type AgentErrorKind = 'permission-denied' | 'unavailable' | 'refused' | 'not-entitled' | 'other';

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
 * Where a volume's identity comes from: the seam between the volume code and an agent API. The
 * Delegated Identity backend is the first implementation; the session and the manager depend only
 * on this, naming pods, never selectors or references.
 */
export interface IdentityBackend {
  /** Opens the shared streams, so readiness reflects the agent before any volume exists. */
  start(): void;
  /**
   * X.509 bundles for `pod`; a new listener immediately receives the latest bundles if any. A backend
   * whose bundles come with each pod's SVID updates (X509SvidUpdate.bundles) never calls it; the
   * Delegated Identity backend serves every pod from one shared stream.
   */
  watchBundles(pod: PodReference, listener: (bundles: BundleUpdate) => void): () => void;
  /** The pod's X.509-SVIDs, every message the full current set, until closed. */
  subscribeX509Svids(pod: PodReference, handlers: X509SvidHandlers): Subscription;
  /**
   * The pod's JWT-SVIDs, each for all `audiences` (at least one). Rejects with AgentError; an empty
   * list means no registration entry gives the pod one yet.
   */
  fetchJwtSvids(pod: PodReference, audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]>;
  /**
   * JWT bundles for `pod`, opened on first use; a new listener immediately receives the latest
   * bundles if any. Shared by every pod (Delegated Identity API) or one stream per pod (Broker API).
   */
  watchJwtBundles(pod: PodReference, listener: (bundles: JwtBundleUpdate) => void): () => void;
  /** True while the agent answers. */
  readonly connected: boolean;
  /** Why the agent cannot be used right now, for /readyz (e.g. `agent unreachable at /x.sock`); undefined when it can. */
  connectionProblem(): string | undefined;
  on(event: 'state', listener: (connected: boolean) => void): unknown;
  off(event: 'state', listener: (connected: boolean) => void): unknown;
  /** How the agent is asked for this pod, for error messages (e.g. `selectors [k8s:ns:default, …]`). */
  describe(pod: PodReference): string;
  /**
   * Why no identity arrives, in an operator's terms with the fix, when the agent's answer or the
   * connection explains it; undefined when the session's own diagnosis says more.
   */
  unreadyReason(error: AgentError | undefined): string | undefined;
  /** Expiry of the SVID the driver itself presents to the agent, for backends that authenticate with one (broker). */
  ownSvidExpiry?(): Date | undefined;
  close(): Promise<void>;
}
