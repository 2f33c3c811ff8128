/**
 * JWT-SVID validation (JWT-SVID.md §2–4 and Appendix A), with jose doing every cryptographic step.
 *
 * Order matters: header restrictions first (the spec requires alg to be vetted before anything
 * else), then the unverified `sub` picks the trust domain, and the `kid` is looked up only in that
 * domain's bundle. A key of another trust domain can therefore never vouch for a subject outside
 * its domain, even when both bundles are loaded. jwtVerify is then restricted to the header's
 * (already allowed) algorithm and checks signature, `aud`, `exp` and `nbf`.
 */
import { errors, importJWK, jwtVerify, type JWTPayload } from 'jose';
import { systemClock } from '../clock/clock.js';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import { messageOf } from '../internal/error-text.js';
import { JwtError } from './errors.js';
import type { JwtAuthority, JwtBundle, JwtBundleSource } from './jwt-bundle.js';
import { parseJwtSvidInsecure, type JwtSvidAlgorithm } from './jwt-svid.js';

/** Leeway for `exp`/`nbf` against clock differences between issuer and validator. */
export const DEFAULT_JWT_CLOCK_SKEW_MS = 30_000;
/** The spec allows "a small amount of leeway"; more than this is almost certainly a unit mistake. */
export const MAX_JWT_CLOCK_SKEW_MS = 5 * 60_000;

/** Options of {@link validateJwtSvid}. */
export interface ValidateJwtSvidOptions {
  /**
   * The audience this validator identifies with. With several, a token is accepted when its `aud`
   * contains any of them (as go-spiffe's ParseAndValidate does).
   */
  readonly audience: string | readonly string[];
  /** Where the signing keys come from: a JwtBundleSet, a JwtSource, or any JwtBundleSource. */
  readonly bundles: JwtBundleSource;
  /** The time to validate at. Default: now. */
  readonly now?: Date;
  /** Leeway for `exp` and `nbf`. Default 30 s, at most 5 min. */
  readonly clockSkewMs?: number;
}

/** A JWT-SVID that passed {@link validateJwtSvid}. */
export interface ValidatedJwtSvid {
  /** The verified `sub`. */
  readonly id: SpiffeId;
  /** Every claim of the verified token. */
  readonly claims: Readonly<JWTPayload>;
  /** The `exp` claim. */
  readonly expiresAt: Date;
  /** The token's `aud`, always as an array. */
  readonly audience: string[];
}

/**
 * Imported keys per bundle. Bundles are immutable, so a cached key can never be stale, and a
 * WeakMap lets a replaced bundle take its keys with it. Keyed by kid and alg because WebCrypto
 * binds an imported key to one algorithm (an RSA key may serve RS256 and PS256).
 */
/** Whatever jose's importJWK yields for a public key (a WebCrypto CryptoKey). */
type VerificationKey = Exclude<Awaited<ReturnType<typeof importJWK>>, Uint8Array>;

const importedKeys = new WeakMap<JwtBundle, Map<string, Promise<VerificationKey>>>();

function importAuthority(bundle: JwtBundle, key: JwtAuthority, alg: JwtSvidAlgorithm): Promise<VerificationKey> {
  const cache = importedKeys.get(bundle) ?? new Map<string, Promise<VerificationKey>>();
  importedKeys.set(bundle, cache);
  const cacheKey = `${key.kid}\0${alg}`;
  let imported = cache.get(cacheKey);
  if (imported === undefined) {
    imported = importJWK(key, alg).then((result) => {
      // Bundles never hold "oct" keys, so jose returning raw bytes would be a bug upstream.
      if (result instanceof Uint8Array) throw new TypeError('expected a public key, got a symmetric key');
      return result;
    });
    const pending = imported;
    // A failed import is not cached: it says nothing about the next token's algorithm.
    pending.catch(() => cache.delete(cacheKey));
    cache.set(cacheKey, pending);
  }
  return imported;
}

function checkAudienceOption(audience: unknown): string[] {
  const list = typeof audience === 'string' ? [audience] : audience;
  if (!Array.isArray(list) || list.length === 0 || !list.every((value) => typeof value === 'string' && value !== '')) {
    throw new JwtError('config', 'the audience option must be a non-empty string or a non-empty array of non-empty strings');
  }
  return [...(list as string[])];
}

function checkSkew(clockSkewMs: unknown): number {
  if (clockSkewMs === undefined) return DEFAULT_JWT_CLOCK_SKEW_MS;
  if (typeof clockSkewMs !== 'number' || !Number.isFinite(clockSkewMs) || clockSkewMs < 0 || clockSkewMs > MAX_JWT_CLOCK_SKEW_MS) {
    throw new JwtError('config', `clockSkewMs must be between 0 and ${MAX_JWT_CLOCK_SKEW_MS}, got ${String(clockSkewMs)}`);
  }
  return clockSkewMs;
}

function translateJoseError(err: unknown, expected: readonly string[], tokenAudience: readonly string[]): JwtError {
  if (err instanceof JwtError) return err;
  if (err instanceof errors.JWTExpired) return new JwtError('expired', 'token has expired', { cause: err });
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') {
      return new JwtError(
        'audience',
        `expected audience in ${JSON.stringify(expected)} (audience=${JSON.stringify(tokenAudience)})`,
        { cause: err },
      );
    }
    if (err.claim === 'nbf') return new JwtError('not-yet-valid', 'token is not valid yet (nbf is in the future)', { cause: err });
    return new JwtError('claims', `token claim "${err.claim}" is invalid: ${err.message}`, { cause: err });
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return new JwtError('signature', 'token signature verification failed', { cause: err });
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return new JwtError('header', `token algorithm not allowed: ${err.message}`, { cause: err });
  return new JwtError('malformed', `token could not be verified: ${messageOf(err)}`, { cause: err });
}

/**
 * Validates a JWT-SVID and returns its verified identity and claims. Throws JwtError (with a
 * `kind`) saying what was wrong; the message never contains the token.
 */
export async function validateJwtSvid(token: string, options: ValidateJwtSvidOptions): Promise<ValidatedJwtSvid> {
  if (typeof options !== 'object' || options === null) throw new JwtError('config', 'options with audience and bundles are required');
  const expected = checkAudienceOption(options.audience);
  const skewMs = checkSkew(options.clockSkewMs);
  const bundles = options.bundles;
  if (typeof bundles?.getJwtBundleForTrustDomain !== 'function') {
    throw new JwtError('config', 'the bundles option must be a JwtBundleSource (a JwtBundleSet or a JwtSource)');
  }
  const now = options.now ?? systemClock.now();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new JwtError('config', 'the now option must be a valid Date');

  const unverified = parseJwtSvidInsecure(token);
  const { alg, kid } = unverified.header;
  const td = unverified.id.trustDomain;
  let bundle: JwtBundle | undefined;
  try {
    bundle = bundles.getJwtBundleForTrustDomain(td);
  } catch (err) {
    throw new JwtError('untrusted', `no bundle found for trust domain "${td.name}": ${messageOf(err)}`, { cause: err });
  }
  if (bundle === undefined) throw new JwtError('untrusted', `no bundle found for trust domain "${td.name}"`);
  const authority = bundle.findKey(kid);
  if (authority === undefined) {
    throw new JwtError('untrusted', `no JWT authority ${JSON.stringify(kid)} found for trust domain "${td.name}"`);
  }
  if (authority.alg !== undefined && authority.alg !== alg) {
    throw new JwtError('key', `JWT authority ${JSON.stringify(kid)} of trust domain "${td.name}" is for ${authority.alg}, token uses ${alg}`);
  }
  let key: VerificationKey;
  try {
    key = await importAuthority(bundle, authority, alg);
  } catch (err) {
    throw new JwtError(
      'key',
      `JWT authority ${JSON.stringify(kid)} of trust domain "${td.name}" cannot verify ${alg} tokens: ${messageOf(err)}`,
      { cause: err },
    );
  }

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: [alg],
      audience: expected,
      requiredClaims: ['sub', 'aud', 'exp'],
      currentDate: now,
      clockTolerance: skewMs / 1000,
    }));
  } catch (err) {
    throw translateJoseError(err, expected, unverified.audience);
  }
  // Same bytes as the unverified decode; checked anyway so the returned id is the signed one.
  if (payload.sub !== unverified.id.toString()) throw new JwtError('subject', 'verified subject differs from the decoded one');
  return {
    id: unverified.id,
    claims: Object.freeze({ ...payload }),
    expiresAt: unverified.expiresAt,
    audience: [...unverified.audience],
  };
}
