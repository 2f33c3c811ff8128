import { EventEmitter } from 'node:events';
import type {
  AgentError,
  AgentJwtSvid,
  BundleUpdate,
  IdentityProvider,
  JwtBundleUpdate,
  Selector,
  Subscription,
  X509SvidHandlers,
  X509SvidUpdate,
} from '../../driver/src/identity/identity-backend.js';

export interface FakeStream {
  readonly selectors: readonly Selector[];
  readonly handlers: X509SvidHandlers;
  closed: boolean;
}

/**
 * A stand-in for the SPIRE agent side of the IdentityProvider seam: tests decide what each
 * subscription receives. The end-to-end tests use the real dev agent instead.
 */
export class FakeIdentityProvider extends EventEmitter implements IdentityProvider {
  connected = true;
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
      if (update !== undefined && !stream.closed) handlers.onUpdate(update);
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

  setJwtBundles(bundles: JwtBundleUpdate): void {
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
      if (podUid === undefined || stream.selectors.some((s) => s.value === `pod-uid:${podUid}`)) stream.handlers.onUpdate(update);
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
