/**
 * The parts of JWT-SVID.md that can be checked without a key: the JOSE header restrictions (§2)
 * and the shape of `sub`, `aud` and `exp` (§3). Validation runs these first, because the spec
 * requires the algorithm to be vetted before anything else is processed and because the trust
 * domain of the unverified `sub` decides which bundle may hold the key. JwtSource runs them on
 * its own token so a garbled file never replaces a good one.
 */
import { inspect } from 'node:util';
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import { messageOf } from '../internal/error-text.js';
import { JwtError } from './errors.js';

/** RFC 7518 §3.3–3.5, the only algorithms JWT-SVID.md §2.1 allows. */
export const JWT_SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
/** One of {@link JWT_SVID_ALGORITHMS}. */
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

const ALLOWED_TYPES = new Set(['JWT', 'JOSE']);
/** Far above any real JWT-SVID (~1 KB); bounds the work done on hostile input. */
export const MAX_JWT_SVID_LENGTH = 64 * 1024;
/** Compact serialization: three base64url segments. An empty signature still parses (alg none). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The JOSE header of a JWT-SVID, as JWT-SVID.md §2 allows it. */
export interface JwtSvidHeader {
  /** The signing algorithm. */
  readonly alg: JwtSvidAlgorithm;
  /** The signing key's ID in the bundle of the subject's trust domain. */
  readonly kid: string;
  /** `JWT` or `JOSE` when present. */
  readonly typ?: string;
}

/** A JWT-SVID whose header and claims have the right shape; nothing about it is verified. */
export interface UnverifiedJwtSvid {
  /** The checked header. */
  readonly header: JwtSvidHeader;
  /** Every claim, unverified. */
  readonly claims: Readonly<JWTPayload>;
  /** The `sub` claim. */
  readonly id: SpiffeId;
  /** The `aud` claim, always as an array. */
  readonly audience: readonly string[];
  /** The `exp` claim. */
  readonly expiresAt: Date;
}

function isAllowedAlgorithm(alg: unknown): alg is JwtSvidAlgorithm {
  return typeof alg === 'string' && (JWT_SVID_ALGORITHMS as readonly string[]).includes(alg);
}

function checkHeader(token: string): JwtSvidHeader {
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch (err) {
    throw new JwtError('malformed', `token header is not valid: ${messageOf(err)}`, { cause: err });
  }
  const { alg, kid, typ } = header;
  if (!isAllowedAlgorithm(alg)) {
    const shown = typeof alg === 'string' ? JSON.stringify(alg) : 'missing';
    throw new JwtError('header', `token header alg ${shown} is not allowed (allowed: ${JWT_SVID_ALGORITHMS.join(', ')})`);
  }
  if (typ !== undefined && (typeof typ !== 'string' || !ALLOWED_TYPES.has(typ))) {
    throw new JwtError('header', 'token header typ must be "JWT" or "JOSE" when present');
  }
  if (typeof kid !== 'string' || kid === '') throw new JwtError('header', 'token header missing key id');
  return typ === undefined ? { alg, kid } : { alg, kid, typ: typ as string };
}

function audienceOf(claims: JWTPayload): string[] {
  const { aud } = claims;
  if (aud === undefined) throw new JwtError('claims', 'token missing aud claim');
  const list = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(list) || list.length === 0 || !list.every((value) => typeof value === 'string' && value !== '')) {
    throw new JwtError('claims', 'token aud claim must be a non-empty string or a non-empty array of non-empty strings');
  }
  return [...list];
}

/**
 * Checks everything JWT-SVID.md requires that does not need a key or a clock, and returns the
 * unverified content. Throws JwtError. Never trust the result for authentication: anyone can
 * produce a token that passes this; use validateJwtSvid().
 */
export function parseJwtSvidInsecure(token: string): UnverifiedJwtSvid {
  if (typeof token !== 'string' || token === '') throw new JwtError('malformed', 'token is empty');
  if (token.length > MAX_JWT_SVID_LENGTH) throw new JwtError('malformed', `token is longer than ${MAX_JWT_SVID_LENGTH} characters`);
  if (!COMPACT_JWS.test(token)) {
    throw new JwtError('malformed', 'token is not a JWS in compact serialization (three base64url parts)');
  }
  const header = checkHeader(token);
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token);
  } catch (err) {
    throw new JwtError('malformed', `token claims are not valid: ${messageOf(err)}`, { cause: err });
  }
  if (claims.sub === undefined) throw new JwtError('subject', 'token missing subject claim');
  let id: SpiffeId;
  try {
    if (typeof claims.sub !== 'string') throw new Error('sub is not a string');
    id = SpiffeId.parse(claims.sub);
  } catch (err) {
    throw new JwtError('subject', `token has an invalid subject claim: ${messageOf(err)}`, { cause: err });
  }
  if (claims.exp === undefined) throw new JwtError('claims', 'token missing exp claim');
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw new JwtError('claims', 'token exp claim is not a number');
  const audience = audienceOf(claims);
  return { header, claims: Object.freeze(claims), id, audience: Object.freeze(audience), expiresAt: new Date(claims.exp * 1000) };
}

/**
 * A JWT-SVID to present to others, as a source holds it. The serialized token is kept out of
 * enumeration, JSON and util.inspect, so logging this object never leaks the bearer credential.
 */
export class JwtSvidToken {
  readonly #token: string;
  /** The SPIFFE ID the token is for (`sub`). */
  readonly id: SpiffeId;
  /** The audiences it may be presented to (`aud`). */
  readonly audience: readonly string[];
  /** When it expires (`exp`). */
  readonly expiresAt: Date;

  /** Wraps an already parsed token; see {@link JwtSvidToken.parse}. */
  constructor(token: string, parsed: Pick<UnverifiedJwtSvid, 'id' | 'audience' | 'expiresAt'>) {
    this.#token = token;
    this.id = parsed.id;
    this.audience = Object.freeze([...parsed.audience]);
    this.expiresAt = parsed.expiresAt;
  }

  /** Parses (without verifying) a JWT-SVID. Throws a {@link JwtError} when it is not one. */
  static parse(token: string): JwtSvidToken {
    return new JwtSvidToken(token, parseJwtSvidInsecure(token));
  }

  /** The compact serialization, for an Authorization header. */
  get token(): string {
    return this.#token;
  }

  /** True when `aud` lists `audience` (maybe among others). */
  hasAudience(audience: string): boolean {
    return this.audience.includes(audience);
  }

  /** `aud` is exactly `[audience]` (or the string `audience`): nobody else may accept this token. */
  isOnlyFor(audience: string): boolean {
    return this.audience.length === 1 && this.audience[0] === audience;
  }

  /** True at and after `exp`. */
  isExpiredAt(now: Date): boolean {
    return this.expiresAt.getTime() <= now.getTime();
  }

  /** Everything but the token, so logging this object never leaks the credential. */
  toJSON(): { id: string; audience: readonly string[]; expiresAt: string } {
    return { id: this.id.toString(), audience: this.audience, expiresAt: this.expiresAt.toISOString() };
  }

  /** What `util.inspect` (and console.log) shows: everything but the token. */
  [inspect.custom](): string {
    return `JwtSvidToken { id: ${this.id.toString()}, audience: ${JSON.stringify(this.audience)}, expiresAt: ${this.expiresAt.toISOString()} }`;
  }
}
