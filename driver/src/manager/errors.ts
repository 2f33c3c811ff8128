import { status } from '@grpc/grpc-js';
import { CsiError } from '../csi/errors.js';
import type { Selector } from '../identity/identity-backend.js';
import { formatSelectors } from '../identity/delegated/selectors.js';
import { TargetPathError } from '../target-path/target-path.js';
import type { SessionDiagnosis } from '../session/volume-session.js';
import type { VolumeSpec } from '../volume/volume-spec.js';

export interface NotReadyContext {
  readonly spec: VolumeSpec;
  readonly selectors: readonly Selector[];
  readonly diagnosis: SessionDiagnosis;
  readonly outcome: 'timeout' | 'aborted';
  readonly timeoutMs: number;
  readonly agentConnected: boolean;
  readonly agentSocket: string | undefined;
}

/**
 * The error a user reads in `kubectl describe pod` when no identity arrived: what was asked for
 * and the most likely fix.
 */
export function notReadyError(ctx: NotReadyContext): CsiError {
  const { spec, diagnosis } = ctx;
  const svid = diagnosis.waitingFor;
  const what =
    ctx.outcome === 'timeout'
      ? `no usable ${svid} arrived within ${formatMs(ctx.timeoutMs)}`
      : `the request was cancelled before a usable ${svid} arrived`;
  const socket = ctx.agentSocket === undefined ? 'its socket' : `its socket ${ctx.agentSocket}`;
  let reason: string;
  if (diagnosis.agentError?.kind === 'permission-denied') {
    reason =
      'the SPIRE agent answered PERMISSION_DENIED: this driver is not an authorized delegate; ' +
      "add the driver's SPIFFE ID to authorized_delegates in the agent's admin API configuration";
  } else if (diagnosis.agentError?.kind === 'unavailable' || !ctx.agentConnected) {
    reason = `the SPIRE agent is unavailable at ${socket}; check that it runs on this node and exposes the admin socket`;
  } else {
    reason = diagnosis.problem;
  }
  return new CsiError(
    status.DEADLINE_EXCEEDED,
    `volume ${spec.volumeId} of pod ${spec.pod.namespace}/${spec.pod.name}: ${what} for selectors ` +
      `[${formatSelectors(ctx.selectors)}]: ${reason}`,
  );
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** Anything not already a CsiError reaches kubelet as INTERNAL, with what the driver was doing. */
export function toCsiError(err: unknown, what: string): CsiError {
  if (err instanceof CsiError) return err;
  if (err instanceof TargetPathError) return new CsiError(status.FAILED_PRECONDITION, err.message, { cause: err });
  return new CsiError(status.INTERNAL, `volume-manager: ${what} failed: ${(err as Error).message}`, { cause: err });
}
