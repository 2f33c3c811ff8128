import { EventEmitter } from 'node:events';
import type {
  AgentError,
  AgentJwtSvid,
  BundleUpdate,
  JwtBundleUpdate,
  Subscription,
  X509SvidHandlers,
  X509SvidUpdate,
} from '../../driver/src/identity/identity-backend.js';
import type { DelegatedIdentityApi } from '../../driver/src/identity/delegated/delegated-identity-client.js';
import type { Selector } from '../../driver/src/identity/delegated/selectors.js';
import { parseJwks } from '../../driver/src/identity/jwks.js';
import { federatedTrustDomains } from '../../driver/src/identity/delegated/wire.js';

/** As the real client hands updates over: `federates_with` already turned into trust domain names. */
function asReceived(update: X509SvidUpdate): X509SvidUpdate {
  return { ...update, federatesWith: federatedTrustDomains(update.federatesWith).domains };
}

export interface FakeStream {
  readonly selectors: readonly Selector[];
  readonly handlers: X509SvidHandlers;
  closed: boolean;
}

/**
 * A stand-in for the SPIRE agent's Delegated Identity API (selector-addressed): tests decide what
 * each subscription receives. The end-to-end tests use the real dev agent instead.
 */
export class FakeIdentityProvider extends EventEmitter implements DelegatedIdentityApi {
  connected = true;

  start(): void {}

  private bundles: BundleUpdate | undefined;
  private readonly bundleListeners = new Set<(bundles: BundleUpdate) => void>();
  readonly streams: FakeStream[] = [];
  /** Answers each new subscription (asynchronously, like a stream); undefined sends nothing. */
  respond: ((selectors: readonly Selector[]) => X509SvidUpdate | undefined) | undefined;
  private jwtBundles: JwtBundleUpdate | undefined;
  private readonly jwtBundleListeners = new Set<(bundles: JwtBundleUpdate) => void>();
  /** Every FetchJWTSVIDs call, in order. */
  readonly jwtFetches: { selectors: readonly Selector[]; audiences: readonly string[] }[] = [];
  /** Answers FetchJWTSVIDs; throw (an AgentError) to fail the call. Unset: no entry matches ([]). */
  respondJwt: ((selectors: readonly Selector[], audiences: readonly string[]) => AgentJwtSvid[] | Promise<AgentJwtSvid[]>) | undefined;

  watchBundles(listener: (bundles: BundleUpdate) => void): () => void {
    this.bundleListeners.add(listener);
    if (this.bundles !== undefined) listener(this.bundles);
    return () => {
      this.bundleListeners.delete(listener);
    };
  }

  watchX509Svids(selectors: readonly Selector[], handlers: X509SvidHandlers): Subscription {
    const stream: FakeStream = { selectors, handlers, closed: false };
    this.streams.push(stream);
    queueMicrotask(() => {
      const update = this.respond?.(selectors);
      if (update !== undefined && !stream.closed) handlers.onUpdate(asReceived(update));
    });
    return {
      close: () => {
        stream.closed = true;
      },
    };
  }

  async fetchJwtSvids(selectors: readonly Selector[], audiences: readonly string[]): Promise<AgentJwtSvid[]> {
    this.jwtFetches.push({ selectors, audiences });
    // Asynchronous like a real call, so callers never see the answer within the same tick.
    await Promise.resolve();
    return (await this.respondJwt?.(selectors, audiences)) ?? [];
  }

  watchJwtBundles(listener: (bundles: JwtBundleUpdate) => void): () => void {
    this.jwtBundleListeners.add(listener);
    if (this.jwtBundles !== undefined) listener(this.jwtBundles);
    return () => {
      this.jwtBundleListeners.delete(listener);
    };
  }

  /** Like the client's wire layer, drops a whole update in which any entry is not a JWKS document. */
  setJwtBundles(bundles: JwtBundleUpdate): void {
    try {
      for (const jwks of bundles.values()) parseJwks(jwks);
    } catch {
      return;
    }
    this.jwtBundles = bundles;
    for (const listener of this.jwtBundleListeners) listener(bundles);
  }

  get jwtBundleListenerCount(): number {
    return this.jwtBundleListeners.size;
  }

  get openStreams(): FakeStream[] {
    return this.streams.filter((s) => !s.closed);
  }

  setBundles(bundles: BundleUpdate): void {
    this.bundles = bundles;
    for (const listener of this.bundleListeners) listener(bundles);
  }

  get bundleListenerCount(): number {
    return this.bundleListeners.size;
  }

  /** Sends to every open stream whose selectors include `k8s:pod-uid:<podUid>` (all when omitted). */
  push(update: X509SvidUpdate, podUid?: string): void {
    for (const stream of this.openStreams) {
      if (podUid === undefined || stream.selectors.some((s) => s.value === `pod-uid:${podUid}`)) stream.handlers.onUpdate(asReceived(update));
    }
  }

  fail(error: AgentError): void {
    for (const stream of this.openStreams) stream.handlers.onError?.(error);
  }

  setConnected(connected: boolean): void {
    this.connected = connected;
    this.emit('state', connected);
  }

  async close(): Promise<void> {
    for (const stream of this.streams) stream.closed = true;
    this.bundleListeners.clear();
    this.jwtBundleListeners.clear();
  }
}
