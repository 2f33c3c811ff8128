import { status } from '@grpc/grpc-js';
import { ManagerError, type ManagerErrorKind } from '../manager/errors.js';
import { TargetPathError, type TargetPathErrorKind } from '../target-path/target-path.js';

/**
 * A failure that reaches kubelet as a gRPC status. The message names the offending field and the
 * fix, because it is what a user sees in `kubectl describe pod`.
 */
export class CsiError extends Error {
  readonly code: status;

  constructor(code: status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CsiError';
    this.code = code;
  }

  static invalidArgument(message: string): CsiError {
    return new CsiError(status.INVALID_ARGUMENT, message);
  }
}

const MANAGER_CODES: Record<ManagerErrorKind, status> = {
  conflict: status.ALREADY_EXISTS,
  'wrong-volume': status.FAILED_PRECONDITION,
  'not-ready': status.DEADLINE_EXCEEDED,
  // The agent called the request invalid: the state of the system, not kubelet's request, is wrong.
  'agent-refused': status.FAILED_PRECONDITION,
  'agent-denied': status.PERMISSION_DENIED,
  'shutting-down': status.UNAVAILABLE,
  'cleanup-incomplete': status.ABORTED,
  internal: status.INTERNAL,
};

const TARGET_PATH_CODES: Record<TargetPathErrorKind, status> = {
  invalid: status.INVALID_ARGUMENT,
  precondition: status.FAILED_PRECONDITION,
  io: status.INTERNAL,
};

/**
 * The one place domain errors become gRPC statuses; the message is kept as raised. Anything
 * unknown stays as it is, and the server answers it as INTERNAL without leaking its text.
 */
export function toCsiError(err: unknown): unknown {
  if (err instanceof CsiError) return err;
  if (err instanceof ManagerError) return new CsiError(MANAGER_CODES[err.kind], err.message, { cause: err });
  if (err instanceof TargetPathError) return new CsiError(TARGET_PATH_CODES[err.kind], err.message, { cause: err });
  return err;
}
