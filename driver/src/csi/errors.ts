import { status } from '@grpc/grpc-js';

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
