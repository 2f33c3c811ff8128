import { status } from '@grpc/grpc-js';
import { AgentError } from '../identity-backend.js';

export const NOT_A_DELEGATE_MESSAGE =
  'this driver is not an authorized delegate of the SPIRE agent: add its SPIFFE ID to `authorized_delegates` ' +
  "in the agent's admin API settings (agent.conf `admin_socket_path` + `authorized_delegates`)";

export interface StatusLike {
  readonly code: status;
  readonly details?: string;
}

/**
 * Turns a gRPC status from the agent into an AgentError whose message tells an operator what to do,
 * not just what the wire said.
 */
export function agentErrorFromStatus(rpc: string, socketPath: string, s: StatusLike, cause?: unknown): AgentError {
  const said = s.details ? ` (agent said: ${s.details})` : '';
  const options = cause === undefined ? undefined : { cause };
  switch (s.code) {
    case status.PERMISSION_DENIED:
      return new AgentError(s.code, 'permission-denied', `spire: ${rpc}: ${NOT_A_DELEGATE_MESSAGE}${said}`, options);
    case status.UNAVAILABLE:
      return new AgentError(
        s.code,
        'unavailable',
        `spire: ${rpc}: the SPIRE agent admin socket ${socketPath} is unavailable; is the agent running with ` +
          `admin_socket_path set to it?${said}`,
        options,
      );
    default:
      return new AgentError(s.code, 'other', `spire: ${rpc} failed with ${status[s.code] ?? s.code}${said}`, options);
  }
}

/** The agent closed a stream it should keep open: treated like an agent going away. */
export function streamEndedError(rpc: string, socketPath: string): AgentError {
  return new AgentError(
    status.UNAVAILABLE,
    'unavailable',
    `spire: ${rpc}: the SPIRE agent at ${socketPath} ended the stream; reconnecting`,
  );
}
