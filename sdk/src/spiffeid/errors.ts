/**
 * Which rule of SPIFFE-ID.md a string broke, so callers can branch without parsing messages.
 *
 * - `type`: not a string.
 * - `empty`: the empty string.
 * - `too-long`: an ID over 2048 bytes or a trust domain over 255.
 * - `scheme`: not `spiffe://` (case included).
 * - `trust-domain`: a missing or malformed trust domain (characters, case, port, userinfo).
 * - `path`: a malformed path (empty or dot segments, trailing slash, characters), or a path
 *   where only a trust domain is allowed.
 * - `query`, `fragment`: a `?` or `#`, which SPIFFE IDs never contain.
 */
export type SpiffeIdErrorKind = 'type' | 'empty' | 'too-long' | 'scheme' | 'trust-domain' | 'path' | 'query' | 'fragment';

/**
 * Thrown when a string is not a valid SPIFFE ID or trust domain. The message starts with
 * `spiffeid: ` and names the broken rule; `kind` says which one.
 */
export class SpiffeIdError extends Error {
  /** Which rule was broken. */
  readonly kind: SpiffeIdErrorKind;

  /** `message` says which rule; it gets the `spiffeid: ` prefix here. */
  constructor(kind: SpiffeIdErrorKind, message: string) {
    super(`spiffeid: ${message}`);
    this.name = 'SpiffeIdError';
    this.kind = kind;
  }
}
