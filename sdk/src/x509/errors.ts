/** An X509-SVID (certificate chain + key) that breaks a rule of X509-SVID.md or is malformed. */
export class X509SvidError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`x509svid: ${message}`, options);
    this.name = 'X509SvidError';
  }
}

/** A trust bundle that could not be parsed. */
export class X509BundleError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`x509bundle: ${message}`, options);
    this.name = 'X509BundleError';
  }
}

/** A peer's chain did not verify against the bundles; the message says which rule failed. */
export class X509VerificationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`x509svid: ${message}`, options);
    this.name = 'X509VerificationError';
  }
}

/** The message of an unknown thrown value, for wrapping lower-level errors with context. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
