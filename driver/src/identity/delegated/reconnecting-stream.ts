import { status, type ClientReadableStream, type StatusObject } from '@grpc/grpc-js';
import { agentErrorFromStatus, streamEndedError } from './agent-errors.js';
import type { Backoff } from '../../retry/backoff.js';
import type { AgentError } from '../identity-backend.js';
import type { Clock, ClockTimer } from '@spire-csi/sdk/clock';

export interface ReconnectingStreamOptions<T> {
  /** RPC name, for messages. */
  readonly rpc: string;
  readonly socketPath: string;
  readonly open: () => ClientReadableStream<T>;
  readonly onMessage: (message: T) => void;
  /** Every failure, including the server ending the stream; a reconnect is already scheduled. */
  readonly onFailure: (error: AgentError, retryInMs: number) => void;
  readonly backoff: Backoff;
  readonly clock: Clock;
}

/**
 * A server stream that reopens itself with backoff until closed. The backoff resets when a stream
 * delivers its first message, so one short outage does not leave later reconnects slow.
 */
export class ReconnectingStream<T> {
  private call: ClientReadableStream<T> | null = null;
  private timer: ClockTimer | null = null;
  private closed = false;

  constructor(private readonly options: ReconnectingStreamOptions<T>) {}

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
      this.fail(agentErrorFromStatus(options.rpc, options.socketPath, { code: status.INTERNAL, details: String(error) }, error));
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
      const error =
        s.code === status.OK
          ? streamEndedError(options.rpc, options.socketPath)
          : agentErrorFromStatus(options.rpc, options.socketPath, s);
      this.fail(error);
    });
  }

  private fail(error: AgentError): void {
    const delay = this.options.backoff.next();
    this.timer = this.options.clock.setTimeout(() => this.connect(), delay);
    this.options.onFailure(error, delay);
  }
}
