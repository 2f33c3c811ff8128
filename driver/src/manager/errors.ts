import { TargetPathError } from '../target-path/target-path.js';
import type { VolumeSpec } from '../volume/volume-spec.js';

/**
 * What went wrong with a volume operation, for the CSI layer to turn into a status code:
 * - `conflict`: the volume is already published with other parameters, or another volume holds the target;
 * - `wrong-volume`: an unpublish names a target that holds another volume;
 * - `not-ready`: no usable identity arrived in time (or the caller gave up first);
 * - `shutting-down`: the driver is stopping; the caller should retry;
 * - `cleanup-incomplete`: a failed publish could not remove what it made; the caller should retry;
 * - `internal`: anything else, with what the driver was doing.
 */
export type ManagerErrorKind = 'conflict' | 'wrong-volume' | 'not-ready' | 'shutting-down' | 'cleanup-incomplete' | 'internal';

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
