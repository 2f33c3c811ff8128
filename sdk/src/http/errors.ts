/**
 * Errors of the HTTP helpers: the JWT-SVID middleware and the bearer-token interceptor. No message
 * ever contains a token: bearer tokens are credentials, and messages end up in logs.
 */

/**
 * - `config`: the bearer interceptor was set up wrongly (no origins, a URL that is not an origin,
 *   no token provider).
 * - `token`: the token provider returned something that is not a compact JWS.
 * - `unauthenticated`: a request had no valid JWT-SVID (HTTP 401).
 * - `forbidden`: a valid JWT-SVID whose SPIFFE ID the authorizer refused (HTTP 403).
 */
export type HttpAuthErrorKind = 'config' | 'token' | 'unauthenticated' | 'forbidden';

/**
 * Every error of the HTTP module. The message starts with `jwtbearer: ` (client side) or
 * `jwtauth: ` (server side).
 */
export class HttpAuthError extends Error {
  /** What went wrong. */
  readonly kind: HttpAuthErrorKind;

  /** `message` says what was wrong; the prefix of `kind` is added here. */
  constructor(kind: HttpAuthErrorKind, message: string, options?: { cause?: unknown }) {
    super(`${kind === 'config' || kind === 'token' ? 'jwtbearer' : 'jwtauth'}: ${message}`, options);
    this.name = 'HttpAuthError';
    this.kind = kind;
  }
}

/** 401: no valid JWT-SVID was presented. 403: a valid one, but the authorizer refused its ID. */
export type JwtAuthenticationStatus = 401 | 403;

export const MISSING_TOKEN_REASON = 'missing bearer token';

/**
 * A request that is not allowed in: the one HttpAuthError a server answers with a status. A
 * subclass because a handler must tell it apart from its own failures (`instanceof`), and reply
 * with `statusCode`, `wwwAuthenticate` and `reason` (short and safe to send to the client; the
 * message has the details for logs).
 */
export class JwtAuthenticationError extends HttpAuthError {
  declare readonly kind: 'unauthenticated' | 'forbidden';
  /** 401 or 403. */
  readonly statusCode: JwtAuthenticationStatus;
  /** Short and safe to send to the client. */
  readonly reason: string;

  /** `reason` goes to the client, `message` (details for logs) gets the `jwtauth: ` prefix. */
  constructor(statusCode: JwtAuthenticationStatus, reason: string, message: string, options?: { cause?: unknown }) {
    super(statusCode === 403 ? 'forbidden' : 'unauthenticated', message, options);
    this.name = 'JwtAuthenticationError';
    this.statusCode = statusCode;
    this.reason = reason;
  }

  /** The WWW-Authenticate value for the response (RFC 6750 section 3). */
  get wwwAuthenticate(): string {
    if (this.statusCode === 403) return 'Bearer error="insufficient_scope"';
    return this.reason === MISSING_TOKEN_REASON ? 'Bearer' : 'Bearer error="invalid_token"';
  }
}
