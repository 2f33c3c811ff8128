/**
 * SPIFFE trust domain names (SPIFFE-ID.md §2.1). Invalid input is rejected, never normalized:
 * silently lowercasing would make two different strings compare equal, which is a trust decision.
 */
import { SpiffeIdError } from './errors.js';

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
/** RFC 3986 limits a host to 255 characters; SPIFFE-ID.md §2.3 carries that over. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const HAS_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/** Throws a SpiffeIdError naming the first rule `name` breaks. */
export function validateTrustDomainName(name: string): void {
  if (name.length === 0) throw new SpiffeIdError('trust-domain', 'trust domain is missing');
  if (Buffer.byteLength(name, 'utf8') > MAX_TRUST_DOMAIN_LENGTH) {
    throw new SpiffeIdError('too-long', `trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} bytes`);
  }
  for (const ch of name) {
    if (TRUST_DOMAIN_CHAR.test(ch)) continue;
    if (ch === '@') throw new SpiffeIdError('trust-domain', 'trust domain cannot contain userinfo ("@")');
    if (ch === ':') throw new SpiffeIdError('trust-domain', 'trust domain cannot contain a port (":")');
    if (ch === '%') throw new SpiffeIdError('trust-domain', 'trust domain cannot contain percent-encoded characters');
    if (ch === '?') throw new SpiffeIdError('query', 'cannot contain a query');
    if (ch === '#') throw new SpiffeIdError('fragment', 'cannot contain a fragment');
    if (/^[A-Z]$/.test(ch)) throw new SpiffeIdError('trust-domain', 'trust domain must be lowercase');
    throw new SpiffeIdError(
      'trust-domain',
      `trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (found ${JSON.stringify(ch)})`,
    );
  }
}

/**
 * A SPIFFE trust domain name (`example.org`), checked against SPIFFE-ID.md and never normalized:
 * `Example.org` is refused, not lowercased. Immutable; build one with {@link TrustDomain.parse}.
 */
export class TrustDomain {
  private constructor(
    /** The bare name, without `spiffe://`. */
    readonly name: string,
  ) {}

  /**
   * Accepts a bare name (`example.org`) or a trust domain ID (`spiffe://example.org`, no path);
   * throws a {@link SpiffeIdError} naming the first broken rule.
   */
  static parse(s: string): TrustDomain {
    if (typeof s !== 'string') throw new SpiffeIdError('type', 'trust domain must be a string');
    if (HAS_SCHEME.test(s)) {
      // Anything with a scheme is treated as an ID so `SPIFFE://x` or `https://x` fail on the
      // scheme rule rather than on a confusing character rule.
      const rest = stripScheme(s);
      const end = rest.search(/[/?#]/);
      if (end !== -1) {
        const delimiter = rest[end];
        if (delimiter === '/') throw new SpiffeIdError('path', 'trust domain ID cannot have a path');
        if (delimiter === '?') throw new SpiffeIdError('query', 'cannot contain a query');
        throw new SpiffeIdError('fragment', 'cannot contain a fragment');
      }
      validateTrustDomainName(rest);
      return new TrustDomain(rest);
    }
    validateTrustDomainName(s);
    return new TrustDomain(s);
  }

  /** The bare name. */
  toString(): string {
    return this.name;
  }

  /** The bare name, so JSON logs show it as written. */
  toJSON(): string {
    return this.name;
  }

  /** The trust domain's own SPIFFE ID string, `spiffe://<name>`. */
  idString(): string {
    return `${SPIFFE_SCHEME_PREFIX}${this.name}`;
  }

  /** True when `other` is the same trust domain. */
  equals(other: TrustDomain): boolean {
    return other instanceof TrustDomain && other.name === this.name;
  }
}

/** Returns what follows `spiffe://`, or throws if the scheme is anything else (case included). */
export function stripScheme(s: string): string {
  if (!s.startsWith(SPIFFE_SCHEME_PREFIX)) {
    if (s.toLowerCase().startsWith(SPIFFE_SCHEME_PREFIX)) throw new SpiffeIdError('scheme', 'scheme must be lowercase "spiffe"');
    throw new SpiffeIdError('scheme', 'scheme is missing or invalid (expected "spiffe://")');
  }
  return s.slice(SPIFFE_SCHEME_PREFIX.length);
}
