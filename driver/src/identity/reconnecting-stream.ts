import type { ClientReadableStream, StatusObject } from '@grpc/grpc-js';
import type { Backoff } from '../retry/backoff.js';
import type { AgentError } from './identity-backend.js';
import type { Clock, ClockTimer } from '@spire-csi/sdk/clock';

/** How one call of a stream ended: with a status, closed by the server (OK), or never opened. */
export type StreamEnd =
  | { readonly kind: 'status'; readonly status: StatusObject }
  | { readonly kind: 'ended' }
  | { readonly kind: 'open-failed'; readonly error: unknown };

export interface ResubscribingStreamOptions<T> {
  readonly open: () => ClientReadableStream<T>;
  readonly onMessage: (message: T) => void;
  /** Every failure, including the server ending the stream; a reconnect is already scheduled. */
  readonly onFailure: (error: AgentError, retryInMs: number) => void;
  /** The agent API's own reading of how a call ended, in an operator's terms. */
  readonly describeEnd: (end: StreamEnd) => AgentError;
  readonly backoff: Backoff;
  readonly clock: Clock;
}

/**
 * A server stream that reopens itself with backoff until closed, whatever the agent API. The
 * backoff resets when a stream delivers its first message, so one short outage does not leave
 * later reconnects slow.
 */
export class ResubscribingStream<T> {
  private call: ClientReadableStream<T> | null = null;
  private timer: ClockTimer | null = null;
  private closed = false;

  constructor(private readonly options: ResubscribingStreamOptions<T>) {}

  start(): void {
    if (this.closed || this.call !== null || this.timer !== null) return;
    this.connect();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
    const call = this.call;
    this.call = null;
    call?.cancel();
  }

  private connect(): void {
    this.timer = null;
    if (this.closed) return;
    const { options } = this;
    let call: ClientReadableStream<T>;
    try {
      call = options.open();
    } catch (error) {
      this.fail(options.describeEnd({ kind: 'open-failed', error }));
      return;
    }
    this.call = call;
    let received = false;
    call.on('data', (message: T) => {
      if (this.call !== call) return;
      if (!received) {
        received = true;
        options.backoff.reset();
      }
      options.onMessage(message);
    });
    // The 'status' event carries the outcome; this listener only keeps an error from being unhandled.
    call.on('error', () => {});
    call.on('status', (s: StatusObject) => {
      if (this.call !== call || this.closed) return;
      this.call = null;
      this.fail(options.describeEnd(s.code === 0 ? { kind: 'ended' } : { kind: 'status', status: s }));
    });
  }

  private fail(error: AgentError): void {
    const delay = this.options.backoff.next();
    this.timer = this.options.clock.setTimeout(() => this.connect(), delay);
    this.options.onFailure(error, delay);
  }
}
