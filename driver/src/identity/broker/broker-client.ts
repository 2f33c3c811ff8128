import { EventEmitter } from 'node:events';
import {
  Metadata,
  connectivityState,
  status,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import { systemClock, type Clock } from '@spire-csi/sdk/clock';
import { loadBrokerProtos } from '../../proto/load.js';
import { Backoff, type BackoffOptions } from '../../retry/backoff.js';
import {
  AgentError,
  type AgentJwtSvid,
  type JwtBundleUpdate,
  type Subscription,
  type X509SvidHandlers,
  type X509SvidUpdate,
} from '../identity-backend.js';
import type { PodReference } from '../pod-reference.js';
import { ResubscribingStream, type StreamEnd } from '../reconnecting-stream.js';
import {
  brokerErrorFromStatus,
  brokerStreamEndedError,
  connectionFailureOf,
  type BrokerErrorContext,
  type ConnectionFailure,
} from './broker-errors.js';
import { describePodReference, podReferenceToWire } from './reference.js';
import {
  jwtBundlesFromBrokerWire,
  jwtSvidsFromBrokerWire,
  x509UpdateFromBrokerWire,
  type WireFetchJwtSvidRequest,
  type WireFetchJwtSvidResponse,
  type WireSubscribeToJwtBundlesRequest,
  type WireSubscribeToJwtBundlesResponse,
  type WireSubscribeToX509SvidRequest,
  type WireSubscribeToX509SvidResponse,
} from './wire.js';

/** The metadata every Broker API request carries (SPIFFE Broker Endpoint §3, against SSRF). */
export const BROKER_HEADER = 'broker.spiffe.io';

const X509_RPC = 'SubscribeToX509SVID';
const JWT_BUNDLES_RPC = 'SubscribeToJWTBundles';
const FETCH_JWT_RPC = 'FetchJWTSVID';
const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

interface BrokerStub extends Client {
  SubscribeToX509SVID(request: WireSubscribeToX509SvidRequest, metadata: Metadata): ClientReadableStream<WireSubscribeToX509SvidResponse>;
  SubscribeToJWTBundles(request: WireSubscribeToJwtBundlesRequest, metadata: Metadata): ClientReadableStream<WireSubscribeToJwtBundlesResponse>;
  FetchJWTSVID(
    request: WireFetchJwtSvidRequest,
    metadata: Metadata,
    options: CallOptions,
    callback: (error: ServiceError | null, response?: WireFetchJwtSvidResponse) => void,
  ): ClientUnaryCall;
}

export interface BrokerClientOptions {
  /** The grpc-js target of the endpoint (`unix:///abs/path`, `dns:host:port`, `ipv4:1.2.3.4:5`). */
  readonly target: string;
  /** The endpoint as the operator wrote it, for messages. */
  readonly endpoint: string;
  /** Mutual TLS with the driver's own SVID, verifying the agent (`@spire-csi/sdk/grpc`). */
  readonly credentials: ChannelCredentials;
  /** The SPIFFE ID the driver presents right now, for messages; undefined before its first SVID. */
  readonly driverId: () => string | undefined;
  /** `--broker-id`, for messages. */
  readonly brokerId?: string;
  readonly logger?: Logger;
  readonly protoDir?: string;
  /** Resubscribe schedule for every stream (each stream keeps its own state). */
  readonly backoff?: BackoffOptions;
  readonly clock?: Clock;
  /** Deadline of one FetchJWTSVID call. Default 30 s. */
  readonly fetchTimeoutMs?: number;
}

/**
 * The SPIFFE Broker API as the driver uses it: one mutually authenticated channel to the agent's
 * broker endpoint, one SubscribeToX509SVID and (when JWTs are asked for) one SubscribeToJWTBundles
 * stream per volume, each naming its pod by reference and resubscribing with capped, jittered
 * backoff until closed; unary FetchJWTSVID. Events: `state` (connected: the channel is up).
 */
export class BrokerClient extends EventEmitter {
  private readonly opts: BrokerClientOptions;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly stub: BrokerStub;
  private readonly referenceType: protobuf.Type;
  private readonly streams = new Set<ResubscribingStream<unknown>>();
  private readonly pendingFetches = new Set<ClientUnaryCall>();
  private isConnected = false;
  private lastFailure: ConnectionFailure | undefined;
  private started = false;
  private closed = false;

  constructor(options: BrokerClientOptions) {
    super();
    this.opts = options;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    const { API, KubernetesObjectReference } = loadBrokerProtos(options.protoDir);
    this.referenceType = KubernetesObjectReference;
    const backoff = options.backoff ?? {};
    const channelOptions: ChannelOptions = {
      // The channel's own reconnects in step with the streams'; grpc's default grows to two minutes.
      'grpc.initial_reconnect_backoff_ms': Math.max(1, backoff.initialMs ?? 500),
      'grpc.max_reconnect_backoff_ms': Math.max(1, backoff.maxMs ?? 30_000),
    };
    this.stub = new API(options.target, options.credentials, channelOptions) as unknown as BrokerStub;
  }

  /** True while the channel to the broker endpoint is up (TLS handshake done both ways). */
  get connected(): boolean {
    return this.isConnected;
  }

  /** Why the endpoint could not be reached, from the latest call that failed so, until the channel is up again. */
  get lastConnectionFailure(): ConnectionFailure | undefined {
    return this.lastFailure;
  }

  /**
   * Connects now and keeps the channel connected, so readiness reflects the endpoint before any
   * volume exists (grpc would otherwise stay idle until the first call, and idle again later).
   */
  start(): void {
    if (this.closed) throw new Error('broker: the Broker API client is closed');
    if (this.started) return;
    this.started = true;
    this.watchChannel();
  }

  subscribeX509Svids(pod: PodReference, handlers: X509SvidHandlers): Subscription {
    const ctx = this.context(X509_RPC, pod);
    let active = true;
    const report = (error: AgentError): void => {
      if (!active) return;
      if (handlers.onError === undefined) {
        this.logger.warn({ rpc: X509_RPC, pod: ctx.pod, code: error.code, kind: error.kind }, error.message);
        return;
      }
      try {
        handlers.onError(error);
      } catch (thrown) {
        this.logger.error({ rpc: X509_RPC, pod: ctx.pod, err: thrown }, 'X509-SVID error handler threw');
      }
    };
    return this.openStream<WireSubscribeToX509SvidResponse>(X509_RPC, pod, (request, metadata) => this.stub.SubscribeToX509SVID(request, metadata), {
      onMessage: (message) => {
        if (!active) return;
        let update: X509SvidUpdate;
        try {
          update = x509UpdateFromBrokerWire(message);
        } catch (error) {
          // Spec 4.6: reported and discarded; the volume keeps what it has.
          // Logged once, where it is reported (the session, or report()'s own warning).
          const detail = `broker: ${X509_RPC} for ${ctx.pod}: ${(error as Error).message}`;
          report(new AgentError(status.INTERNAL, 'other', detail, { cause: error }));
          return;
        }
        try {
          handlers.onUpdate(update);
        } catch (error) {
          this.logger.error({ rpc: X509_RPC, pod: ctx.pod, err: error }, 'X509-SVID update handler threw');
        }
      },
      onFailure: (error, retryInMs) => {
        this.logger.debug({ rpc: X509_RPC, pod: ctx.pod, code: error.code, kind: error.kind, retryInMs }, error.message);
        report(error);
      },
      onClose: () => {
        active = false;
      },
    });
  }

  /** One stream per call: the Broker API's JWT bundles belong to the pod they were asked for. */
  watchJwtBundles(pod: PodReference, listener: (bundles: JwtBundleUpdate) => void): () => void {
    const ctx = this.context(JWT_BUNDLES_RPC, pod);
    let active = true;
    const subscription = this.openStream<WireSubscribeToJwtBundlesResponse>(
      JWT_BUNDLES_RPC,
      pod,
      (request, metadata) => this.stub.SubscribeToJWTBundles(request, metadata),
      {
        onMessage: (message) => {
          if (!active) return;
          let bundles: JwtBundleUpdate;
          try {
            bundles = jwtBundlesFromBrokerWire(message);
          } catch (error) {
            this.logger.error({ rpc: JWT_BUNDLES_RPC, pod: ctx.pod }, `${(error as Error).message}; keeping the previous JWT bundles`);
            return;
          }
          try {
            listener(bundles);
          } catch (error) {
            this.logger.error({ rpc: JWT_BUNDLES_RPC, pod: ctx.pod, err: error }, 'JWT bundle listener threw');
          }
        },
        onFailure: (error, retryInMs) => {
          this.logger.warn({ rpc: JWT_BUNDLES_RPC, pod: ctx.pod, code: error.code, kind: error.kind, retryInMs }, error.message);
        },
        onClose: () => {
          active = false;
        },
      },
    );
    return () => subscription.close();
  }

  fetchJwtSvids(pod: PodReference, audiences: readonly string[], signal?: AbortSignal): Promise<AgentJwtSvid[]> {
    if (this.closed) return Promise.reject(new Error('broker: the Broker API client is closed'));
    if (audiences.length === 0) return Promise.reject(new TypeError('broker: FetchJWTSVID needs at least one audience'));
    const ctx = this.context(FETCH_JWT_RPC, pod);
    const request: WireFetchJwtSvidRequest = { reference: podReferenceToWire(pod, this.referenceType), audience: [...audiences], spiffe_id: '' };
    return new Promise<AgentJwtSvid[]>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new AgentError(status.CANCELLED, 'other', `broker: ${FETCH_JWT_RPC} was cancelled`));
        return;
      }
      const onAbort = (): void => call.cancel();
      const options: CallOptions = { deadline: Date.now() + (this.opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS) };
      const call = this.stub.FetchJWTSVID(request, brokerMetadata(), options, (error, response) => {
        this.pendingFetches.delete(call);
        signal?.removeEventListener('abort', onAbort);
        if (error) {
          this.noteFailure(error.code, error.details);
          reject(brokerErrorFromStatus(ctx, error, error));
          return;
        }
        try {
          resolve(jwtSvidsFromBrokerWire(response ?? { svids: [] }));
        } catch (thrown) {
          reject(new AgentError(status.INTERNAL, 'other', `broker: ${FETCH_JWT_RPC} for ${ctx.pod}: ${(thrown as Error).message}`, { cause: thrown }));
        }
      });
      this.pendingFetches.add(call);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.pendingFetches) call.cancel();
    this.pendingFetches.clear();
    for (const stream of this.streams) stream.close();
    this.streams.clear();
    this.setConnected(false);
    this.stub.close();
  }

  private openStream<T>(
    rpc: string,
    pod: PodReference,
    call: (request: { reference: ReturnType<typeof podReferenceToWire> }, metadata: Metadata) => ClientReadableStream<T>,
    handlers: { onMessage: (message: T) => void; onFailure: (error: AgentError, retryInMs: number) => void; onClose: () => void },
  ): Subscription {
    if (this.closed) throw new Error('broker: the Broker API client is closed');
    // Encoded once: the reference of a volume never changes while it is published.
    const request = { reference: podReferenceToWire(pod, this.referenceType) };
    const describeEnd = (end: StreamEnd): AgentError => {
      const ctx = this.context(rpc, pod);
      switch (end.kind) {
        case 'ended':
          return brokerStreamEndedError(ctx);
        case 'status':
          this.noteFailure(end.status.code, end.status.details);
          return brokerErrorFromStatus(ctx, end.status);
        case 'open-failed':
          return brokerErrorFromStatus(ctx, { code: status.INTERNAL, details: String(end.error) }, end.error);
      }
    };
    const stream = new ResubscribingStream<T>({
      open: () => call(request, brokerMetadata()),
      onMessage: handlers.onMessage,
      onFailure: handlers.onFailure,
      describeEnd,
      backoff: new Backoff(this.opts.backoff ?? {}),
      clock: this.clock,
    });
    const entry = stream as ResubscribingStream<unknown>;
    this.streams.add(entry);
    stream.start();
    return {
      close: () => {
        handlers.onClose();
        stream.close();
        this.streams.delete(entry);
      },
    };
  }

  private context(rpc: string, pod: PodReference): BrokerErrorContext {
    return { rpc, pod: describePodReference(pod), endpoint: this.opts.endpoint, driverId: this.opts.driverId(), brokerId: this.opts.brokerId };
  }

  private watchChannel(): void {
    if (this.closed) return;
    const channel = this.stub.getChannel();
    // Asking with tryToConnect leaves IDLE at once: the channel idles after 30 minutes without
    // calls, and an idle channel would read as a lost broker.
    const state = channel.getConnectivityState(true);
    if (state === connectivityState.SHUTDOWN) return;
    this.setConnected(state === connectivityState.READY);
    channel.watchConnectivityState(state, Infinity, () => this.watchChannel());
  }

  private noteFailure(code: status, details: string): void {
    if (code !== status.UNAVAILABLE || this.isConnected) return;
    this.lastFailure = connectionFailureOf(details) ?? this.lastFailure;
  }

  private setConnected(connected: boolean): void {
    if (this.isConnected === connected) return;
    this.isConnected = connected;
    if (connected) this.lastFailure = undefined;
    this.emit('state', connected);
  }
}

function brokerMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set(BROKER_HEADER, 'true');
  return metadata;
}
