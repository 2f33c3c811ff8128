/**
 * `config`: a TLS helper was set up in a way that would weaken SPIFFE authentication (no
 * Authorizer, a managed option, a TLS floor below 1.2, a server attached twice). `rejected`: a peer
 * was refused by something that threw a non-Error value (verification and authorizers throw their
 * own errors: X509Error, AuthorizationError).
 */
export type TlsErrorKind = 'config' | 'rejected';

/** Every error of the TLS module; the message starts with `tls: `. */
export class TlsError extends Error {
  /** What went wrong. */
  readonly kind: TlsErrorKind;

  /** `message` says what was wrong; it gets the `tls: ` prefix here. */
  constructor(kind: TlsErrorKind, message: string, options?: { cause?: unknown }) {
    super(`tls: ${message}`, options);
    this.name = 'TlsError';
    this.kind = kind;
  }
}

/** Authorizers and verifiers throw Errors by contract; anything else is still a denial. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new TlsError('rejected', `peer rejected: ${String(err)}`);
}
