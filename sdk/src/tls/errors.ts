/** A TLS helper was configured in a way that would weaken SPIFFE authentication. */
export class SpiffeTlsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`tls: ${message}`, options);
    this.name = 'SpiffeTlsError';
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Authorizers and verifiers throw Errors by contract; anything else is still a denial. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new SpiffeTlsError(`peer rejected: ${String(err)}`);
}
