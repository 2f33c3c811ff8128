/**
 * An X509Source fed by the SPIFFE Workload API: the FetchX509SVID stream of a local agent (SPIRE,
 * or anything that implements the spec). TLS servers, clients and dispatchers take it exactly as
 * they take a FileSource.
 *
 * The rules, from the spec and from FileSource: every message is the full set and replaces the
 * previous material only once it is completely valid; a bad message is reported and the last good
 * material keeps serving. A broken stream is reopened with backoff on the injected clock, except
 * after InvalidArgument or Unimplemented, which the spec says never to retry. PermissionDenied
 * (no identity for this workload yet) is retried: the agent may simply not have synced its entries.
 * Like go-spiffe, the last SVID is kept while the stream is down; it is the caller's to decide
 * (from 'error' and 'state') whether to stop using it before it expires.
 */
import { EventEmitter } from 'node:events';
import { status as grpcStatus, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { systemClock, type Clock, type ClockTimer } from '../clock/clock.js';
import { ReadyWaiters } from '../source/ready-waiters.js';
import { messageOf } from '../internal/error-text.js';
import { silentLogger, type Logger } from '../logger.js';
import type { X509Material, X509Source } from '../source/x509-source.js';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import type { X509Bundle } from '../x509/bundle.js';
import type { X509BundleSet } from '../x509/bundle-set.js';
import type { X509Svid } from '../x509/svid.js';
import { ReconnectBackoff, type BackoffOptions } from './backoff.js';
import { parseEndpointUri } from './endpoint.js';
import { WorkloadApiError } from './errors.js';
import { WorkloadApiClient, type X509SvidStream } from './workload-client.js';
import { materialFromResponse, type SvidChoice } from './x509-response.js';
import type { X509SvidResponseMessage } from './workload-proto.js';

/** Options of {@link WorkloadApiSource}. */
export interface WorkloadApiSourceOptions {
  /** `unix:///abs/path` or `tcp://IP:port`; default: env SPIFFE_ENDPOINT_SOCKET. */
  readonly endpoint?: string;
  /** Where SPIFFE_ENDPOINT_SOCKET is looked up when no endpoint is given. Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Which SVID when the API returns several (default: the first, as the spec says). */
  readonly spiffeId?: string;
  /** Likewise, the SVID with this hint (the registration entry's); with `spiffeId`, both must match. */
  readonly hint?: string;
  /** Time for reconnect delays, ready() deadlines and SVID validity checks. Default: the system clock. */
  readonly clock?: Clock;
  /** Where updates, refused messages and reconnects are logged (pino-compatible). Default: nowhere. */
  readonly logger?: Logger;
  /** Reconnect delays after the stream broke. Default 500 ms doubling up to 30 s. */
  readonly backoff?: BackoffOptions;
}

/** The events of {@link WorkloadApiSource}. */
export interface WorkloadApiSourceEvents {
  /** New material, including the first. */
  update: [material: X509Material];
  /** A message was refused or the stream broke; the previous material (if any) is still current. */
  error: [error: WorkloadApiError];
  /** The stream came up (`true`) or went down (`false`). */
  state: [connected: boolean];
}

/** How long ready() waits by default. */
export const DEFAULT_WORKLOAD_API_READY_TIMEOUT_MS = 30_000;

const STATUS_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(grpcStatus)
    .filter(([, code]) => typeof code === 'number')
    .map(([name, code]) => [code as number, name]),
);

function statusName(code: number): string {
  return STATUS_NAMES[code] ?? `code ${code}`;
}

function configError(message: string, cause?: unknown): WorkloadApiError {
  return new WorkloadApiError('config', message, cause === undefined ? undefined : { cause });
}

/** The problem of `error` without the module prefix, for quoting inside another message. */
function problemOf(error: WorkloadApiError): string {
  return error.message.replace(/^workloadapi: /, '');
}

/** Same SVID (chain and key) and equal bundles: nothing a consumer would do differently. */
function sameMaterial(a: X509Material, b: X509Material): boolean {
  const chainA = a.svid.certificates;
  const chainB = b.svid.certificates;
  return (
    chainA.length === chainB.length &&
    chainA.every((cert, i) => cert.raw.equals(chainB[i]!.raw)) &&
    // The key bytes, not KeyObjects: importing two keys to compare them costs ~1 ms on OpenSSL 3.0.
    a.svid.privateKeyPem() === b.svid.privateKeyPem() &&
    a.bundles.equals(b.bundles)
  );
}

/**
 * An {@link X509Source} fed by the SPIFFE Workload API's FetchX509SVID stream. A message that is
 * not completely valid never replaces good material: it is reported as an `error` event while the
 * last good SVID and bundles keep serving. The stream is reopened with backoff when it breaks.
 */
export class WorkloadApiSource extends EventEmitter<WorkloadApiSourceEvents> implements X509Source {
  /** The endpoint URI in use, as given (or as read from SPIFFE_ENDPOINT_SOCKET). */
  readonly endpoint: string;

  private readonly choice: SvidChoice;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly backoff: ReconnectBackoff;
  private readonly client: WorkloadApiClient;
  private readonly waiters: ReadyWaiters<X509Material, WorkloadApiError>;
  private material: X509Material | undefined;
  private lastError: WorkloadApiError | undefined;
  private stream: X509SvidStream | undefined;
  private retryTimer: ClockTimer | undefined;
  private isConnected = false;
  /** Set after a status the spec says not to retry. */
  private stopped = false;
  private closed = false;

  /**
   * Starts the FetchX509SVID stream at once; await ready() for the first valid material. Throws a
   * {@link WorkloadApiError} (`config`) when no endpoint is configured, the endpoint URI breaks the
   * spec's rules, or an option is invalid.
   */
  constructor(options: WorkloadApiSourceOptions = {}) {
    super();
    // Every server, agent and dispatcher subscribes; dozens of listeners is normal, not a leak.
    this.setMaxListeners(0);
    const env = options.env ?? process.env;
    const given = options.endpoint;
    const endpoint = given ?? env['SPIFFE_ENDPOINT_SOCKET'];
    if (endpoint === undefined || endpoint === '') {
      throw configError('no Workload API endpoint: pass the `endpoint` option or set SPIFFE_ENDPOINT_SOCKET (e.g. unix:///run/spire/agent.sock)');
    }
    const target = parseEndpointUri(endpoint, { what: given !== undefined ? 'endpoint' : 'SPIFFE_ENDPOINT_SOCKET' });
    this.endpoint = endpoint;
    this.choice = WorkloadApiSource.choiceOf(options);
    this.clock = options.clock ?? systemClock;
    this.waiters = new ReadyWaiters(this.clock);
    this.logger = options.logger ?? silentLogger;
    this.backoff = new ReconnectBackoff(options.backoff);
    this.client = new WorkloadApiClient(target.grpcTarget);
    this.connect();
  }

  /** True while the FetchX509SVID stream is up. */
  get connected(): boolean {
    return this.isConnected;
  }

  /**
   * Resolves with the first valid material. Rejects with a {@link WorkloadApiError}: `timeout`
   * after `timeoutMs` (saying what the last problem was), `rejected` when the server refused the
   * request for good, `closed` once the source is closed.
   */
  ready(timeoutMs: number = DEFAULT_WORKLOAD_API_READY_TIMEOUT_MS): Promise<X509Material> {
    if (this.material !== undefined) return Promise.resolve(this.material);
    if (this.closed) return Promise.reject(new WorkloadApiError('closed', `the source for ${this.endpoint} is closed`));
    if (this.stopped && this.lastError !== undefined) return Promise.reject(this.lastError);
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      return Promise.reject(configError(`ready() timeoutMs must be a non-negative number of milliseconds, got ${String(timeoutMs)}`));
    }
    return this.waiters.wait(timeoutMs, () => {
      const last = this.lastError === undefined ? '' : ` (last problem: ${problemOf(this.lastError)})`;
      return new WorkloadApiError('timeout', `no valid X509-SVID from the Workload API at ${this.endpoint} within ${timeoutMs} ms${last}`);
    });
  }

  /** The current material. Throws a {@link WorkloadApiError} (`not-ready`) before the first valid message. */
  current(): X509Material {
    if (this.material !== undefined) return this.material;
    const last = this.lastError === undefined ? '' : ` (last problem: ${problemOf(this.lastError)})`;
    throw new WorkloadApiError('not-ready', `no X509-SVID received yet from the Workload API at ${this.endpoint}; await ready() first${last}`);
  }

  /** The current SVID; throws like {@link WorkloadApiSource.current} before the first message. */
  getX509Svid(): X509Svid {
    return this.current().svid;
  }

  /** The current bundles; throws like {@link WorkloadApiSource.current} before the first message. */
  getX509Bundles(): X509BundleSet {
    return this.current().bundles;
  }

  /** Undefined before the first message: an unknown domain is untrusted, which is the safe answer. */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.material?.bundles.get(td);
  }

  /** Ends the stream and the channel. Idempotent; material already received stays readable. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
    this.client.close();
    this.setConnected(false);
    this.waiters.rejectAll(new WorkloadApiError('closed', `the source for ${this.endpoint} was closed before a valid X509-SVID arrived`));
    return Promise.resolve();
  }

  private static choiceOf(options: WorkloadApiSourceOptions): SvidChoice {
    let spiffeId: SpiffeId | undefined;
    if (options.spiffeId !== undefined) {
      try {
        spiffeId = SpiffeId.parse(options.spiffeId);
      } catch (err) {
        throw configError(`spiffeId option ${JSON.stringify(options.spiffeId)} is not a SPIFFE ID: ${messageOf(err)}`, err);
      }
    }
    if (options.hint !== undefined && (typeof options.hint !== 'string' || options.hint === '')) {
      throw configError('hint option must be a non-empty string (the hint of the registration entry to use)');
    }
    return Object.freeze({ ...(spiffeId !== undefined ? { spiffeId } : {}), ...(options.hint !== undefined ? { hint: options.hint } : {}) });
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.closed || this.stopped) return;
    let stream: X509SvidStream;
    try {
      stream = this.client.fetchX509Svid();
    } catch (err) {
      // grpc-js throws synchronously only for a closed channel or a broken codec: retrying
      // cannot help, and saying so beats a silent stall.
      this.stop(new WorkloadApiError('unavailable', `cannot open FetchX509SVID on ${this.endpoint}: ${messageOf(err)}`, { cause: err }));
      return;
    }
    this.stream = stream;
    this.logger.debug({ endpoint: this.endpoint }, 'workloadapi: FetchX509SVID stream opened');
    stream.on('metadata', () => {
      if (this.stream === stream) this.setConnected(true);
    });
    stream.on('data', (message: X509SvidResponseMessage) => {
      if (this.stream !== stream) return;
      this.setConnected(true);
      this.onMessage(message);
    });
    // grpc-js emits 'error' (non-OK) and then 'status' (always): the status decides, the error
    // listener only keeps an unhandled 'error' from crashing the process.
    stream.on('error', (_err: ServiceError) => {});
    stream.on('status', (status: StatusObject) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.setConnected(false);
      this.onStreamEnd(status);
    });
  }

  private onMessage(message: X509SvidResponseMessage): void {
    let next: X509Material;
    try {
      next = materialFromResponse(message, this.choice, this.clock.now());
    } catch (err) {
      const error = err instanceof WorkloadApiError ? err : new WorkloadApiError('invalid-response', messageOf(err), { cause: err });
      this.report(error, this.material !== undefined ? 'keeping the current X509-SVID' : 'no X509-SVID yet');
      return;
    }
    this.backoff.reset();
    this.lastError = undefined;
    const previous = this.material;
    if (previous !== undefined && sameMaterial(previous, next)) return;
    // An SVID rotation usually leaves the bundles as they were: keeping the previous (immutable)
    // set keeps everything scoped to it, such as remembered peer verifications, valid.
    const bundles = previous !== undefined && previous.bundles.equals(next.bundles) ? previous.bundles : next.bundles;
    const material: X509Material = Object.freeze({ svid: next.svid, bundles });
    this.material = material;
    this.logger.info(
      {
        endpoint: this.endpoint,
        spiffeId: material.svid.id.toString(),
        serialNumber: material.svid.serialNumber,
        notAfter: material.svid.notAfter.toISOString(),
        trustDomains: material.bundles.trustDomains().map((td) => td.name),
      },
      previous === undefined ? 'workloadapi: received X509-SVID' : 'workloadapi: X509-SVID or bundles updated',
    );
    this.waiters.resolveAll(material);
    try {
      this.emit('update', material);
    } catch (err) {
      this.logger.error({ endpoint: this.endpoint, error: messageOf(err) }, "workloadapi: an 'update' listener threw");
    }
  }

  private onStreamEnd(status: StatusObject): void {
    if (this.closed) return;
    const code = status.code;
    const said = status.details === '' ? statusName(code) : `${statusName(code)}: ${status.details}`;
    if (code === grpcStatus.INVALID_ARGUMENT || code === grpcStatus.UNIMPLEMENTED) {
      // The spec: InvalidArgument means the request is wrong (the security header), Unimplemented
      // that this is no Workload API; neither gets better by asking again.
      this.stop(
        new WorkloadApiError('rejected', `the Workload API at ${this.endpoint} refused FetchX509SVID (${said}); not retrying`, { code }),
      );
      return;
    }
    const delay = this.backoff.next();
    const retry = `retrying in ${delay} ms`;
    const error =
      code === grpcStatus.PERMISSION_DENIED
        ? new WorkloadApiError('permission-denied', `the Workload API at ${this.endpoint} has no identity for this workload (${said}); ${retry}`, { code })
        : code === grpcStatus.OK
          ? new WorkloadApiError('unavailable', `the Workload API at ${this.endpoint} ended the FetchX509SVID stream; ${retry}`, { code })
          : new WorkloadApiError('unavailable', `the Workload API at ${this.endpoint} is unavailable (${said}); ${retry}`, { code });
    this.report(error, this.material !== undefined ? 'keeping the current X509-SVID' : 'no X509-SVID yet');
    this.retryTimer = this.clock.setTimeout(() => this.connect(), delay);
  }

  /** No more attempts: reported, and ready() callers learn it now rather than at their deadline. */
  private stop(error: WorkloadApiError): void {
    this.stopped = true;
    this.report(error, 'stopped');
    this.waiters.rejectAll(error);
  }

  /** Logged always; emitted as 'error' only when someone listens, so it can never crash the process. */
  private report(error: WorkloadApiError, state: string): void {
    this.lastError = error;
    this.logger.warn({ endpoint: this.endpoint, kind: error.kind, code: error.code, state }, error.message);
    if (this.listenerCount('error') === 0) return;
    try {
      this.emit('error', error);
    } catch (err) {
      this.logger.error({ endpoint: this.endpoint, error: messageOf(err) }, "workloadapi: an 'error' listener threw");
    }
  }

  private setConnected(connected: boolean): void {
    if (this.isConnected === connected) return;
    this.isConnected = connected;
    try {
      this.emit('state', connected);
    } catch (err) {
      this.logger.error({ endpoint: this.endpoint, error: messageOf(err) }, "workloadapi: a 'state' listener threw");
    }
  }
}
