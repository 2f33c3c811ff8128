import { status, type ClientReadableStream } from '@grpc/grpc-js';
import { agentErrorFromStatus, streamEndedError } from './agent-errors.js';
import type { Backoff } from '../../retry/backoff.js';
import type { AgentError } from '../identity-backend.js';
import { ResubscribingStream, type StreamEnd } from '../reconnecting-stream.js';
import type { Clock } from '@spire-csi/sdk/clock';

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

/** A Delegated Identity API stream that reopens itself with backoff until closed. */
export class ReconnectingStream<T> extends ResubscribingStream<T> {
  constructor(options: ReconnectingStreamOptions<T>) {
    const { rpc, socketPath } = options;
    const describeEnd = (end: StreamEnd): AgentError => {
      switch (end.kind) {
        case 'ended':
          return streamEndedError(rpc, socketPath);
        case 'status':
          return agentErrorFromStatus(rpc, socketPath, end.status);
        case 'open-failed':
          return agentErrorFromStatus(rpc, socketPath, { code: status.INTERNAL, details: String(end.error) }, end.error);
      }
    };
    super({ open: options.open, onMessage: options.onMessage, onFailure: options.onFailure, backoff: options.backoff, clock: options.clock, describeEnd });
  }
}
