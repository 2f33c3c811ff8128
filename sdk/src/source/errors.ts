/**
 * Everything a source reports. One class with a `kind` lets callers branch on the cause (keep
 * serving vs. alert) without parsing messages; the message says what was wrong with which file
 * and never contains key material or a token.
 */

/**
 * What went wrong, or (for `warning` events) what is about to.
 *
 * - `config`: no folder configured (no argument, no SPIFFE_CREDENTIAL_FOLDER) or invalid options.
 * - `missing`: the folder or an expected file is absent.
 * - `unreadable`: the folder or a file could not be read (permissions, I/O).
 * - `inconsistent`: the files changed on every attempt, so no consistent snapshot could be read.
 * - `invalid`: the files were read but do not form valid material.
 * - `expired`: an SVID or token outside its validity period: an update refused, or (as a warning)
 *   the current SVID, with nothing newer.
 * - `timeout`: nothing valid arrived before the `ready()` deadline.
 * - `not-ready`: material was asked for before the first valid load.
 * - `closed`: the source was closed.
 * - `audience`: `JwtSource` has no token for exactly the audience asked for.
 * - `expiring` (warning): the current SVID is close to expiry and nothing newer arrived.
 * - `foreign-root` (warning): a root of the split bundle file names another trust domain, so it
 *   was not trusted for the SVID's own.
 * - `duplicate-spelling` (warning): the folder holds one file under two of the spellings the
 *   SPIFFE Filesystem Delivery draft has had; the newest was read.
 */
export type SourceErrorKind =
  | 'config'
  | 'missing'
  | 'unreadable'
  | 'inconsistent'
  | 'invalid'
  | 'expired'
  | 'timeout'
  | 'not-ready'
  | 'closed'
  | 'audience'
  | 'expiring'
  | 'foreign-root'
  | 'duplicate-spelling';

/** Which source raised an error; its message starts with this name. */
export type SourceOrigin = 'filesource' | 'jwtsource';

/** The problem each error was raised with, before its origin was put in front (see problemOf). */
const problems = new WeakMap<SourceError, string>();

/** Every error (and warning) of a source. The message starts with `filesource: ` or `jwtsource: `. */
export class SourceError extends Error {
  /** Which source raised it. */
  readonly origin: SourceOrigin;
  /** What went wrong. */
  readonly kind: SourceErrorKind;

  /** `message` says what was wrong with which file; `origin` is put in front of it here. */
  constructor(origin: SourceOrigin, kind: SourceErrorKind, message: string, options?: { cause?: unknown }) {
    super(`${origin}: ${message}`, options);
    this.name = 'SourceError';
    this.origin = origin;
    this.kind = kind;
    problems.set(this, message);
  }
}

/**
 * The problem `err` was raised with, without its origin: for quoting it inside another message of
 * the same source ("... (last problem: <problem>)") without naming the source twice. Internal.
 */
export function problemOf(err: SourceError): string {
  return problems.get(err) ?? err.message;
}
