/**
 * Errors of the JWT-SVID module. Each class has a `kind` so callers (and the HTTP helpers) can
 * branch on the cause without parsing messages. No message ever contains a token or key material:
 * bearer tokens are credentials, and error messages end up in logs and HTTP responses.
 */
import type { FileSourceErrorKind } from '../source/errors.js';

export type JwtSvidErrorKind =
  /** The validator was called with bad options (empty audience, no bundle source, ...). */
  | 'config'
  /** Not a compact JWS with a JSON header and a JSON object payload. */
  | 'malformed'
  /** A header the spec forbids: alg outside the allowed list, bad typ, no kid. */
  | 'header'
  /** `sub` missing or not a SPIFFE ID. */
  | 'subject'
  /** A required claim (`aud`, `exp`) is missing or has the wrong type. */
  | 'claims'
  /** No bundle for the subject's trust domain, or no key with the token's kid in it. */
  | 'untrusted'
  /** The bundle key cannot be used with the token's algorithm. */
  | 'key'
  /** The signature does not verify. */
  | 'signature'
  /** None of the expected audiences is in `aud`. */
  | 'audience'
  | 'expired'
  /** `nbf` is in the future. */
  | 'not-yet-valid';

export class JwtSvidError extends Error {
  constructor(
    readonly kind: JwtSvidErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`jwtsvid: ${message}`, options);
    this.name = 'JwtSvidError';
  }
}

export class JwtBundleError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`jwtbundle: ${message}`, options);
    this.name = 'JwtBundleError';
  }
}

export type JwtSourceErrorKind =
  | FileSourceErrorKind
  /** The current token does not carry the audience getToken() was asked for. */
  | 'audience';

export class JwtSourceError extends Error {
  constructor(
    readonly kind: JwtSourceErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`jwtsource: ${message}`, options);
    this.name = 'JwtSourceError';
  }
}

/** Configuration mistakes of bearerTokenInterceptor (bad origins, bad provider). */
export class BearerTokenError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`jwtbearer: ${message}`, options);
    this.name = 'BearerTokenError';
  }
}

export type JwtAuthenticationStatus = 401 | 403;

/**
 * A request that is not allowed in. `statusCode` is 401 when no valid JWT-SVID was presented and
 * 403 when a valid one was presented but the authorizer refused its SPIFFE ID. `reason` is short
 * and safe to send to the client; `message` has the details for logs.
 */
export class JwtAuthenticationError extends Error {
  constructor(
    readonly statusCode: JwtAuthenticationStatus,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`jwtauth: ${message}`, options);
    this.name = 'JwtAuthenticationError';
  }

  /** The WWW-Authenticate value for the response (RFC 6750 section 3). */
  get wwwAuthenticate(): string {
    if (this.statusCode === 403) return 'Bearer error="insufficient_scope"';
    return this.reason === MISSING_TOKEN_REASON ? 'Bearer' : 'Bearer error="invalid_token"';
  }
}

export const MISSING_TOKEN_REASON = 'missing bearer token';

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
