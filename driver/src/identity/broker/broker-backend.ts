import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import type {
  AgentError,
  AgentJwtSvid,
  BundleUpdate,
  IdentityBackend,
  JwtBundleUpdate,
  Subscription,
  X509SvidHandlers,
} from '../identity-backend.js';
import type { PodReference } from '../pod-reference.js';
import { ownSvidOf, type OwnIdentity } from './own-identity.js';
import { describePodReference } from './reference.js';
import { ALLOWLIST_SETTING, type ConnectionFailure } from './broker-errors.js';

/** What the backend needs of the Broker API client; BrokerClient is the implementation. */
export interface BrokerApi {
  readonly connected: boolean;
  readonly lastConnectionFailure: ConnectionFailure | undefined;
  start(): void;
  subscribeX509Svids(pod: PodReference, handlers: X509SvidHandlers): Subscription;
  watchJwtBundles(pod: PodReference, listener: (bundles: JwtBundleUpdate) => void): () => void;
  fetchJwtSvids(pod: PodReference, audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]>;
  on(event: 'state', listener: (connected: boolean) => void): unknown;
  off(event: 'state', listener: (connected: boolean) => void): unknown;
  close(): Promise<void>;
}

export interface BrokerBackendOptions {
  readonly api: BrokerApi;
  /** The driver's own SVID, from the Workload API. */
  readonly ownIdentity: OwnIdentity;
  /** The broker endpoint as configured, for messages. */
  readonly brokerEndpoint: string;
  /** The Workload API endpoint as configured, for messages. */
  readonly workloadApi: string;
  /** `--broker-id`; without it any SPIFFE ID of the driver's own trust domain is accepted. */
  readonly brokerId?: string;
  readonly logger?: Logger;
}

/**
 * The IdentityBackend of the SPIFFE Broker API: the driver names each pod by reference and the
 * agent attests it. Bundles come per pod with its SVIDs (X509SvidUpdate.bundles) and JWT bundles on
 * a stream per pod, so nothing received for one pod can reach another's folder.
 */
export class BrokerBackend implements IdentityBackend {
  readonly #opts: BrokerBackendOptions;
  readonly #logger: Logger;
  #announced = false;
  readonly #onOwnUpdate = (): void => this.#announceOwnSvid();

  constructor(options: BrokerBackendOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
  }

  get connected(): boolean {
    return this.#opts.api.connected;
  }

  /** Expiry of the driver's own SVID; undefined before the first. */
  ownSvidExpiry(): Date | undefined {
    return ownSvidOf(this.#opts.ownIdentity)?.notAfter;
  }

  /** The SPIFFE ID the driver presents to the broker endpoint; undefined before its first SVID. */
  ownSpiffeId(): string | undefined {
    return ownSvidOf(this.#opts.ownIdentity)?.id.toString();
  }

  start(): void {
    this.#opts.ownIdentity.on('update', this.#onOwnUpdate);
    this.#announceOwnSvid();
    this.#opts.api.start();
  }

  /** Never called by sessions of this backend: each X.509 update carries the pod's own bundles. */
  watchBundles(_pod: PodReference, _listener: (bundles: BundleUpdate) => void): () => void {
    return () => {};
  }

  subscribeX509Svids(pod: PodReference, handlers: X509SvidHandlers): Subscription {
    return this.#opts.api.subscribeX509Svids(pod, handlers);
  }

  fetchJwtSvids(pod: PodReference, audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]> {
    return this.#opts.api.fetchJwtSvids(pod, audiences, signal).catch((error: unknown) => {
      // SPIRE answers PermissionDenied ("no identity issued") where the Delegated API returned an
      // empty list; the session's own message for that ("no registration entry matches") applies.
      if ((error as AgentError).kind === 'not-entitled') return [];
      throw error;
    });
  }

  watchJwtBundles(pod: PodReference, listener: (bundles: JwtBundleUpdate) => void): () => void {
    return this.#opts.api.watchJwtBundles(pod, listener);
  }

  on(event: 'state', listener: (connected: boolean) => void): this {
    this.#opts.api.on(event, listener);
    return this;
  }

  off(event: 'state', listener: (connected: boolean) => void): this {
    this.#opts.api.off(event, listener);
    return this;
  }

  describe(pod: PodReference): string {
    return describePodReference(pod);
  }

  /** Fixed wording (it is served on /readyz): the endpoint, the driver's ID and the setting to check, never a pod. */
  connectionProblem(): string | undefined {
    const own = this.ownSpiffeId();
    if (own === undefined) return this.#noOwnSvid();
    if (this.#opts.api.connected) return undefined;
    const endpoint = this.#opts.brokerEndpoint;
    switch (this.#opts.api.lastConnectionFailure) {
      case 'handshake-refused':
        return `broker endpoint ${endpoint} refused the TLS handshake: add the driver's SPIFFE ID ${own} to the SPIRE agent's ${ALLOWLIST_SETTING} allowlist`;
      case 'server-rejected': {
        const expected = this.#opts.brokerId ?? `an ID of trust domain ${own.slice('spiffe://'.length).split('/')[0]}`;
        return `broker endpoint ${endpoint} presented a certificate the driver does not accept (expected ${expected})`;
      }
      default:
        return `broker endpoint unreachable at ${endpoint}`;
    }
  }

  unreadyReason(error: AgentError | undefined): string | undefined {
    if (this.ownSpiffeId() === undefined) return this.#noOwnSvid();
    // Every Broker API error already says what the agent answered and what to change.
    if (error !== undefined) return error.message;
    if (!this.#opts.api.connected) return this.connectionProblem();
    return undefined;
  }

  async close(): Promise<void> {
    this.#opts.ownIdentity.off('update', this.#onOwnUpdate);
    await this.#opts.api.close();
    await this.#opts.ownIdentity.close();
  }

  #noOwnSvid(): string {
    return (
      `the driver has no X.509-SVID of its own yet from the Workload API at ${this.#opts.workloadApi}; ` +
      "check that the SPIRE agent serves it there and that a registration entry matches the driver's pod"
    );
  }

  /** Said once, with the trust domain, when the first own SVID arrives. */
  #announceOwnSvid(): void {
    if (this.#announced) return;
    const own = ownSvidOf(this.#opts.ownIdentity);
    if (own === undefined) return;
    this.#announced = true;
    const fields = { spiffeId: own.id.toString(), brokerEndpoint: this.#opts.brokerEndpoint };
    if (this.#opts.brokerId === undefined) {
      this.#logger.info(
        { ...fields, acceptedBrokerIds: `spiffe://${own.id.trustDomain.name}/*` },
        "no --broker-id: the broker endpoint may present any SPIFFE ID of the driver's own trust domain",
      );
    } else {
      this.#logger.info({ ...fields, brokerId: this.#opts.brokerId }, 'driver SVID received; the broker endpoint must present --broker-id');
    }
  }
}
