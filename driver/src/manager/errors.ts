import { status } from '@grpc/grpc-js';
import type { AgentError } from '../identity/identity-backend.js';
import { TargetPathError } from '../target-path/target-path.js';
import type { VolumeSpec } from '../volume/volume-spec.js';

/**
 * What went wrong with a volume operation, for the CSI layer to turn into a status code:
 * - `conflict`: the volume is already published with other parameters, or another volume holds the target;
 * - `wrong-volume`: an unpublish names a target that holds another volume;
 * - `not-ready`: no usable identity arrived in time (or the caller gave up first);
 * - `agent-refused`: the agent rejected the request for this pod as invalid; retrying cannot help;
 * - `agent-denied`: the agent does not allow this driver to ask for the pod (its broker policy);
 * - `shutting-down`: the driver is stopping; the caller should retry;
 * - `cleanup-incomplete`: a failed publish could not remove what it made; the caller should retry;
 * - `internal`: anything else, with what the driver was doing.
 */
export type ManagerErrorKind =
  | 'conflict'
  | 'wrong-volume'
  | 'not-ready'
  | 'agent-refused'
  | 'agent-denied'
  | 'shutting-down'
  | 'cleanup-incomplete'
  | 'internal';

export class ManagerError extends Error {
  readonly kind: ManagerErrorKind;

  constructor(kind: ManagerErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ManagerError';
    this.kind = kind;
  }
}

export const SHUTTING_DOWN_MESSAGE = 'volume-manager: the driver is shutting down; retry';

export interface NotReadyContext {
  readonly spec: VolumeSpec;
  /** How the backend asks for this pod (e.g. `selectors [...]`). */
  readonly asked: string;
  /** What the session is still waiting for. */
  readonly waitingFor: 'X.509-SVID' | 'JWT-SVID';
  /** The backend's explanation when it has one, else the session's own diagnosis. */
  readonly reason: string;
  readonly outcome: 'timeout' | 'aborted';
  readonly timeoutMs: number;
}

/**
 * The error a user reads in `kubectl describe pod` when no identity arrived: what was asked for
 * and the most likely fix.
 */
export function notReadyError(ctx: NotReadyContext): ManagerError {
  const what =
    ctx.outcome === 'timeout'
      ? `no usable ${ctx.waitingFor} arrived within ${formatMs(ctx.timeoutMs)}`
      : `the request was cancelled before a usable ${ctx.waitingFor} arrived`;
  return new ManagerError(
    'not-ready',
    `volume ${ctx.spec.volumeId} of pod ${ctx.spec.pod.namespace}/${ctx.spec.pod.name}: ${what} for ${ctx.asked}: ${ctx.reason}`,
  );
}

/**
 * The agent answered that the request for this pod can never succeed as sent (AgentError kind
 * `refused`): the publish fails now. Its message is the agent error's, which already names what
 * was asked and the fix; PermissionDenied (the driver's own policy) and the rest (an invalid request) map apart.
 */
export function refusedError(spec: VolumeSpec, error: AgentError): ManagerError {
  const kind = error.code === status.PERMISSION_DENIED ? 'agent-denied' : 'agent-refused';
  return new ManagerError(kind, `volume ${spec.volumeId} of pod ${spec.pod.namespace}/${spec.pod.name}: ${error.message}`, {
    cause: error,
  });
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Keeps domain errors as they are and wraps anything else as `internal`, saying what the driver
 * was doing.
 */
export function asManagerError(err: unknown, what: string): Error {
  if (err instanceof ManagerError || err instanceof TargetPathError) return err;
  return new ManagerError('internal', `volume-manager: ${what} failed: ${(err as Error).message}`, { cause: err });
}
