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
import type { DelegatedIdentityApi } from './delegated-identity-client.js';
import { buildSelectors, formatSelectors } from './selectors.js';

export interface DelegatedBackendOptions {
  /** Sent as `k8s:node-name`; the Kubernetes node this driver serves. */
  readonly nodeName: string;
  /** Named in errors when the agent cannot be reached. */
  readonly adminSocket?: string;
}

/**
 * The IdentityBackend of SPIRE's Delegated Identity API: the driver is the attestor, so each pod
 * becomes the selectors the agent's k8s attestor would have produced for it.
 */
export class DelegatedBackend implements IdentityBackend {
  readonly #api: DelegatedIdentityApi;
  readonly #options: DelegatedBackendOptions;

  constructor(api: DelegatedIdentityApi, options: DelegatedBackendOptions) {
    this.#api = api;
    this.#options = options;
  }

  get connected(): boolean {
    return this.#api.connected;
  }

  start(): void {
    this.#api.start();
  }

  /** One shared stream serves every pod: the Delegated Identity API's bundles are not per workload. */
  watchBundles(_pod: PodReference, listener: (bundles: BundleUpdate) => void): () => void {
    return this.#api.watchBundles(listener);
  }

  subscribeX509Svids(pod: PodReference, handlers: X509SvidHandlers): Subscription {
    return this.#api.watchX509Svids(this.#selectors(pod), handlers);
  }

  fetchJwtSvids(pod: PodReference, audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]> {
    return this.#api.fetchJwtSvids(this.#selectors(pod), audiences, signal);
  }

  watchJwtBundles(_pod: PodReference, listener: (bundles: JwtBundleUpdate) => void): () => void {
    return this.#api.watchJwtBundles(listener);
  }

  connectionProblem(): string | undefined {
    if (this.#api.connected) return undefined;
    return `agent unreachable at ${this.#options.adminSocket ?? 'its admin socket'}`;
  }

  on(event: 'state', listener: (connected: boolean) => void): this {
    this.#api.on(event, listener);
    return this;
  }

  off(event: 'state', listener: (connected: boolean) => void): this {
    this.#api.off(event, listener);
    return this;
  }

  describe(pod: PodReference): string {
    return `selectors [${formatSelectors(this.#selectors(pod))}]`;
  }

  unreadyReason(error: AgentError | undefined): string | undefined {
    if (error?.kind === 'permission-denied') {
      return (
        'the SPIRE agent answered PERMISSION_DENIED: this driver is not an authorized delegate; ' +
        "add the driver's SPIFFE ID to authorized_delegates in the agent's admin API configuration"
      );
    }
    if (error?.kind === 'unavailable' || !this.#api.connected) {
      const socket = this.#options.adminSocket === undefined ? 'its socket' : `its socket ${this.#options.adminSocket}`;
      return `the SPIRE agent is unavailable at ${socket}; check that it runs on this node and exposes the admin socket`;
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.#api.close();
  }

  #selectors(pod: PodReference) {
    return buildSelectors(pod, this.#options.nodeName);
  }
}
