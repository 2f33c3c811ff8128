/**
 * Errors of the JWT-SVID module. No message ever contains a token or key material: bearer tokens
 * are credentials, and error messages end up in logs and HTTP responses.
 */

/**
 * What was wrong, so callers (and the HTTP helpers) can branch without parsing messages.
 *
 * - `config`: the validator was called with bad options (empty audience, no bundle source, ...).
 * - `malformed`: not a compact JWS with a JSON header and a JSON object payload.
 * - `header`: a header the spec forbids: `alg` outside the allowed list, bad `typ`, no `kid`.
 * - `subject`: `sub` missing or not a SPIFFE ID.
 * - `claims`: a required claim (`aud`, `exp`) is missing or has the wrong type.
 * - `untrusted`: no bundle for the subject's trust domain, or no key with the token's `kid` in it.
 * - `key`: the bundle key cannot be used with the token's algorithm.
 * - `signature`: the signature does not verify.
 * - `audience`: none of the expected audiences is in `aud`.
 * - `expired`: `exp` has passed. `not-yet-valid`: `nbf` is in the future.
 * - `bundle`: a JWT bundle (JWKS) or bundle set could not be parsed or built.
 */
export type JwtErrorKind =
  | 'config'
  | 'malformed'
  | 'header'
  | 'subject'
  | 'claims'
  | 'untrusted'
  | 'key'
  | 'signature'
  | 'audience'
  | 'expired'
  | 'not-yet-valid'
  | 'bundle';

/**
 * Every error of the JWT module. The message starts with `jwtbundle: ` for bundle problems and
 * `jwtsvid: ` for everything about a token, and never contains the token.
 */
export class JwtError extends Error {
  /** What was wrong. */
  readonly kind: JwtErrorKind;

  /** `message` says what was wrong; the prefix of `kind` is added here. */
  constructor(kind: JwtErrorKind, message: string, options?: { cause?: unknown }) {
    super(`${kind === 'bundle' ? 'jwtbundle' : 'jwtsvid'}: ${message}`, options);
    this.name = 'JwtError';
    this.kind = kind;
  }
}
