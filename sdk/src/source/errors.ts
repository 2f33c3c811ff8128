/**
 * Everything FileSource can report. One class with a `kind` lets callers branch on the cause
 * (keep serving vs. alert) without parsing messages; the message says what was wrong with which
 * file and never contains key material.
 */

export type FileSourceErrorKind =
  /** No folder configured (no argument, no SPIFFE_CREDENTIAL_FOLDER) or invalid options. */
  | 'config'
  /** The folder or an expected credential file is absent. */
  | 'missing'
  /** The folder or a file could not be read (permissions, I/O). */
  | 'unreadable'
  /** The files changed on every attempt, so no consistent snapshot could be read. */
  | 'inconsistent'
  /** The files were read but do not form a valid X509-SVID with its own trust bundle. */
  | 'invalid'
  /** The SVID is outside its validity period (expired or not yet valid). */
  | 'expired'
  /** No valid credentials arrived before the ready() deadline. */
  | 'timeout'
  /** Material was requested before the first valid load, or after close() without any. */
  | 'not-ready'
  /** The source was closed. */
  | 'closed';

export class FileSourceError extends Error {
  constructor(
    readonly kind: FileSourceErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`filesource: ${message}`, options);
    this.name = 'FileSourceError';
  }
}

/** The message of an unknown thrown value, for wrapping lower-level errors with context. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The errno code of a Node fs error, if any. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
