import { EventEmitter } from 'node:events';
import { isAbsolute } from 'node:path';
import {
  credentials,
  status,
  type CallOptions,
  type ChannelOptions,
  type Client,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import { loadProtos } from '../../proto/load.js';
import { Backoff, type BackoffOptions } from '../../retry/backoff.js';
import { agentErrorFromStatus } from './agent-errors.js';
import {
  AgentError,
  type AgentJwtSvid,
  type BundleUpdate,
  type JwtBundleUpdate,
  type Subscription,
  type X509SvidHandlers,
  type X509SvidUpdate,
} from '../identity-backend.js';
import { ReconnectingStream } from './reconnecting-stream.js';
import { formatSelectors, type Selector } from './selectors.js';
import { systemClock, type Clock } from '@spire-csi/sdk/clock';
import {
  bundleUpdateFromWire,
  jwtBundleUpdateFromWire,
  jwtSvidsFromWire,
  selectorsToWire,
  svidUpdateFromWire,
  type WireFetchJwtSvidsRequest,
  type WireFetchJwtSvidsResponse,
  type WireSubscribeToJwtBundlesResponse,
  type WireSubscribeToX509BundlesResponse,
  type WireSubscribeToX509SvidsResponse,
} from './wire.js';

export interface DelegatedIdentityClientOptions {
  /** Absolute path of the agent's admin socket. */
  readonly socketPath: string;
  readonly logger?: Logger;
  /** Folder holding the .proto files; found next to the module by default. */
  readonly protoDir?: string;
  /** Reconnect schedule for every stream (each stream keeps its own state). */
  readonly backoff?: BackoffOptions;
  readonly clock?: Clock;
  /** Deadline of one FetchJWTSVIDs call. Default 30 s. */
  readonly fetchTimeoutMs?: number;
}

const BUNDLES_RPC = 'SubscribeToX509Bundles';
const SVIDS_RPC = 'SubscribeToX509SVIDs';
const JWT_BUNDLES_RPC = 'SubscribeToJWTBundles';
const FETCH_JWT_RPC = 'FetchJWTSVIDs';
const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

interface DelegatedIdentityStub extends Client {
  SubscribeToX509Bundles(request: object): ClientReadableStream<WireSubscribeToX509BundlesResponse>;
  SubscribeToX509SVIDs(request: object): ClientReadableStream<WireSubscribeToX509SvidsResponse>;
  SubscribeToJWTBundles(request: object): ClientReadableStream<WireSubscribeToJwtBundlesResponse>;
  FetchJWTSVIDs(
    request: WireFetchJwtSvidsRequest,
    options: CallOptions,
    callback: (error: ServiceError | null, response?: WireFetchJwtSvidsResponse) => void,
  ): ClientUnaryCall;
}

/**
 * The Delegated Identity API as the driver uses it, addressed by selectors (the driver attests the
 * pod). DelegatedBackend adapts it to the IdentityBackend seam; tests stand in for it.
 */
export interface DelegatedIdentityApi {
  /** Opens the shared bundle stream. */
  start(): void;
  watchBundles(listener: (bundles: BundleUpdate) => void): () => void;
  watchX509Svids(selectors: readonly Selector[], handlers: X509SvidHandlers): Subscription;
  /** One FetchJWTSVIDs call: a JWT-SVID per matching entry, each for all `audiences`. */
  fetchJwtSvids(selectors: readonly Selector[], audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]>;
  watchJwtBundles(listener: (bundles: JwtBundleUpdate) => void): () => void;
  readonly connected: boolean;
  on(event: 'state', listener: (connected: boolean) => void): unknown;
  off(event: 'state', listener: (connected: boolean) => void): unknown;
  close(): Promise<void>;
}

/**
 * The driver's view of a SPIRE agent through the Delegated Identity API: one shared bundle stream
 * fanned out to every listener, one X509-SVID stream per watch (per volume), each reconnecting
 * with capped, jittered backoff until closed; one shared JWT bundle stream (opened on first use)
 * and unary JWT-SVID fetches. Events: `state` (connected: boolean).
 */
export class DelegatedIdentityClient extends EventEmitter implements DelegatedIdentityApi {
  private readonly socketPath: string;
  private readonly logger: Logger;
  private readonly backoffOptions: BackoffOptions;
  private readonly clock: Clock;
  private readonly stub: DelegatedIdentityStub;
  private readonly bundleStream: ReconnectingStream<WireSubscribeToX509BundlesResponse>;
  private readonly bundleListeners = new Set<(bundles: BundleUpdate) => void>();
  private readonly svidStreams = new Set<ReconnectingStream<WireSubscribeToX509SvidsResponse>>();
  private readonly jwtBundleStream: ReconnectingStream<WireSubscribeToJwtBundlesResponse>;
  private readonly jwtBundleListeners = new Set<(bundles: JwtBundleUpdate) => void>();
  private readonly pendingFetches = new Set<ClientUnaryCall>();
  private readonly fetchTimeoutMs: number;
  private bundles: BundleUpdate | null = null;
  private jwtBundles: JwtBundleUpdate | null = null;
  private isConnected = false;
  private closed = false;

  constructor(options: DelegatedIdentityClientOptions) {
    super();
    if (!isAbsolute(options.socketPath)) {
      throw new TypeError(`spire: admin socket path must be absolute, got "${options.socketPath}"`);
    }
    this.socketPath = options.socketPath;
    this.logger = options.logger ?? silentLogger;
    this.backoffOptions = options.backoff ?? {};
    this.clock = options.clock ?? systemClock;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    const { DelegatedIdentity } = loadProtos(options.protoDir).delegatedIdentity;
    const channelOptions: ChannelOptions = {
      // Keep the channel's own reconnect backoff in step with ours; grpc's default grows to two
      // minutes, which would delay recovery long after the agent is back.
      'grpc.initial_reconnect_backoff_ms': Math.max(1, this.backoffOptions.initialMs ?? 500),
      'grpc.max_reconnect_backoff_ms': Math.max(1, this.backoffOptions.maxMs ?? 30_000),
    };
    this.stub = new DelegatedIdentity(`unix:${this.socketPath}`, credentials.createInsecure(), channelOptions) as unknown as DelegatedIdentityStub;
    this.bundleStream = new ReconnectingStream({
      rpc: BUNDLES_RPC,
      socketPath: this.socketPath,
      open: () => this.stub.SubscribeToX509Bundles({}),
      onMessage: (message) => this.onBundles(message),
      onFailure: (error, retryInMs) => {
        this.setConnected(false);
        this.logger.warn({ rpc: BUNDLES_RPC, code: error.code, kind: error.kind, retryInMs }, error.message);
      },
      backoff: new Backoff(this.backoffOptions),
      clock: this.clock,
    });
    this.jwtBundleStream = new ReconnectingStream({
      rpc: JWT_BUNDLES_RPC,
      socketPath: this.socketPath,
      open: () => this.stub.SubscribeToJWTBundles({}),
      onMessage: (message) => this.onJwtBundles(message),
      onFailure: (error, retryInMs) => {
        this.logger.warn({ rpc: JWT_BUNDLES_RPC, code: error.code, kind: error.kind, retryInMs }, error.message);
      },
      backoff: new Backoff(this.backoffOptions),
      clock: this.clock,
    });
  }

  /** True once the bundle stream has delivered, until it fails. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** The last bundles received, if any. */
  get latestBundles(): BundleUpdate | null {
    return this.bundles;
  }

  /** Opens the shared bundle stream now (it also opens on the first watchBundles), so readiness reflects the agent. */
  start(): void {
    if (this.closed) throw new Error('spire: the Delegated Identity client is closed');
    this.bundleStream.start();
  }

  watchBundles(listener: (bundles: BundleUpdate) => void): () => void {
    this.start();
    this.bundleListeners.add(listener);
    if (this.bundles !== null) listener(this.bundles);
    return () => {
      this.bundleListeners.delete(listener);
    };
  }

  watchX509Svids(selectors: readonly Selector[], handlers: X509SvidHandlers): Subscription {
    if (this.closed) throw new Error('spire: the Delegated Identity client is closed');
    const request = { selectors: selectorsToWire(selectors), pid: 0 };
    const described = formatSelectors(selectors);
    let active = true;
    const stream: ReconnectingStream<WireSubscribeToX509SvidsResponse> = new ReconnectingStream({
      rpc: SVIDS_RPC,
      socketPath: this.socketPath,
      open: () => this.stub.SubscribeToX509SVIDs(request),
      onMessage: (message) => {
        if (!active) return;
        let update: X509SvidUpdate;
        try {
          update = svidUpdateFromWire(message, (invalid) =>
            this.logger.warn({ rpc: SVIDS_RPC, selectors: described, invalid }, 'ignoring malformed federates_with entries'),
          );
        } catch (error) {
          const detail = `spire: ${SVIDS_RPC} for [${described}]: ${(error as Error).message}`;
          this.reportSvidError(handlers, new AgentError(status.INTERNAL, 'other', detail, { cause: error }), described);
          return;
        }
        try {
          handlers.onUpdate(update);
        } catch (error) {
          this.logger.error({ rpc: SVIDS_RPC, selectors: described, err: error }, 'X509-SVID update handler threw');
        }
      },
      onFailure: (error, retryInMs) => {
        this.logger.debug({ rpc: SVIDS_RPC, selectors: described, code: error.code, retryInMs }, error.message);
        if (active) this.reportSvidError(handlers, error, described);
      },
      backoff: new Backoff(this.backoffOptions),
      clock: this.clock,
    });
    this.svidStreams.add(stream);
    stream.start();
    return {
      close: () => {
        active = false;
        stream.close();
        this.svidStreams.delete(stream);
      },
    };
  }

  watchJwtBundles(listener: (bundles: JwtBundleUpdate) => void): () => void {
    if (this.closed) throw new Error('spire: the Delegated Identity client is closed');
    // Opened lazily: a node whose pods never ask for JWTs keeps one stream fewer on the agent.
    this.jwtBundleStream.start();
    this.jwtBundleListeners.add(listener);
    if (this.jwtBundles !== null) listener(this.jwtBundles);
    return () => {
      this.jwtBundleListeners.delete(listener);
    };
  }

  fetchJwtSvids(selectors: readonly Selector[], audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]> {
    if (this.closed) return Promise.reject(new Error('spire: the Delegated Identity client is closed'));
    if (audiences.length === 0) return Promise.reject(new TypeError('spire: FetchJWTSVIDs needs at least one audience'));
    const request: WireFetchJwtSvidsRequest = { audience: [...audiences], selectors: selectorsToWire(selectors), pid: 0 };
    return new Promise<AgentJwtSvid[]>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new AgentError(status.CANCELLED, 'other', `spire: ${FETCH_JWT_RPC} was cancelled`));
        return;
      }
      const onAbort = (): void => call.cancel();
      const call = this.stub.FetchJWTSVIDs(request, { deadline: Date.now() + this.fetchTimeoutMs }, (error, response) => {
        this.pendingFetches.delete(call);
        signal?.removeEventListener('abort', onAbort);
        if (error) {
          reject(agentErrorFromStatus(FETCH_JWT_RPC, this.socketPath, { code: error.code, details: error.details }, error));
          return;
        }
        try {
          resolve(jwtSvidsFromWire(response ?? { svids: [] }));
        } catch (thrown) {
          reject(new AgentError(status.INTERNAL, 'other', `spire: ${FETCH_JWT_RPC}: ${(thrown as Error).message}`, { cause: thrown }));
        }
      });
      this.pendingFetches.add(call);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.bundleStream.close();
    this.jwtBundleStream.close();
    for (const call of this.pendingFetches) call.cancel();
    this.pendingFetches.clear();
    this.jwtBundleListeners.clear();
    for (const stream of this.svidStreams) stream.close();
    this.svidStreams.clear();
    this.bundleListeners.clear();
    this.setConnected(false);
    this.stub.close();
  }

  private onBundles(message: WireSubscribeToX509BundlesResponse): void {
    let bundles: BundleUpdate;
    try {
      bundles = bundleUpdateFromWire(message);
    } catch (error) {
      this.logger.error({ rpc: BUNDLES_RPC }, (error as Error).message);
      return;
    }
    this.bundles = bundles;
    this.setConnected(true);
    this.logger.debug({ rpc: BUNDLES_RPC, trustDomains: [...bundles.keys()] }, 'bundles updated');
    for (const listener of [...this.bundleListeners]) {
      try {
        listener(bundles);
      } catch (error) {
        this.logger.error({ rpc: BUNDLES_RPC, err: error }, 'bundle listener threw');
      }
    }
  }

  private onJwtBundles(message: WireSubscribeToJwtBundlesResponse): void {
    let bundles: JwtBundleUpdate;
    try {
      bundles = jwtBundleUpdateFromWire(message);
    } catch (error) {
      this.logger.error({ rpc: JWT_BUNDLES_RPC }, `${(error as Error).message}; keeping the previous JWT bundles`);
      return;
    }
    this.jwtBundles = bundles;
    this.logger.debug({ rpc: JWT_BUNDLES_RPC, trustDomains: [...bundles.keys()] }, 'JWT bundles updated');
    for (const listener of [...this.jwtBundleListeners]) {
      try {
        listener(bundles);
      } catch (error) {
        this.logger.error({ rpc: JWT_BUNDLES_RPC, err: error }, 'JWT bundle listener threw');
      }
    }
  }

  private reportSvidError(handlers: X509SvidHandlers, error: AgentError, selectors: string): void {
    if (handlers.onError === undefined) {
      this.logger.warn({ rpc: SVIDS_RPC, selectors, code: error.code, kind: error.kind }, error.message);
      return;
    }
    try {
      handlers.onError(error);
    } catch (thrown) {
      this.logger.error({ rpc: SVIDS_RPC, selectors, err: thrown }, 'X509-SVID error handler threw');
    }
  }

  private setConnected(connected: boolean): void {
    if (this.isConnected === connected) return;
    this.isConnected = connected;
    this.emit('state', connected);
  }
}
