/**
 * `config`: credentials were asked for in a way that would weaken SPIFFE authentication (no
 * Authorizer). Refused peers are not errors of this kind: a client sees its connection fail with
 * the verifier's or authorizer's error, a server answers the call with a gRPC status.
 */
export type SpiffeGrpcErrorKind = 'config';

/** Every error thrown by `@spire-csi/sdk/grpc`; the message starts with `grpc: `. */
export class SpiffeGrpcError extends Error {
  /** What went wrong. */
  readonly kind: SpiffeGrpcErrorKind;

  /** `message` says what was wrong; it gets the `grpc: ` prefix here. */
  constructor(kind: SpiffeGrpcErrorKind, message: string, options?: { cause?: unknown }) {
    super(`grpc: ${message}`, options);
    this.name = 'SpiffeGrpcError';
    this.kind = kind;
  }
}
