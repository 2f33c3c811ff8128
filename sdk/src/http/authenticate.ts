/**
 * Server side of JWT-SVID over HTTP (JWT-SVID.md §5.2): take the bearer token from the
 * Authorization header, validate it, authorize its SPIFFE ID. Framework-neutral; see
 * jwtSvidMiddleware for plain node:http / express, and the example below for fastify.
 *
 * fastify:
 *
 *   fastify.addHook('preHandler', async (request, reply) => {
 *     try {
 *       await authenticateJwtSvid(request, { audience: 'api', bundles: source, authorizer: authorizeMemberOf('example.org') });
 *     } catch (err) {
 *       if (!(err instanceof JwtAuthenticationError)) throw err;
 *       return reply.code(err.statusCode).header('www-authenticate', err.wwwAuthenticate).send({ error: err.reason });
 *     }
 *   });
 *   // in a handler: jwtPeerId(request)
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Authorizer } from '../authorize/authorizer.js';
import { systemClock, type Clock } from '../clock/clock.js';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import { messageOf } from '../internal/error-text.js';
import { JwtError, type JwtErrorKind } from '../jwt/errors.js';
import type { JwtBundleSource } from '../jwt/jwt-bundle.js';
import type { JwtBundleSet } from '../jwt/jwt-bundle-set.js';
import { validateJwtSvid, type ValidatedJwtSvid } from '../jwt/validate.js';
import { JwtAuthenticationError, MISSING_TOKEN_REASON } from './errors.js';

/** A node IncomingMessage, a fastify/express request, or anything with fetch-style Headers. */
export interface RequestWithHeaders {
  /** The request headers; only `authorization` is read. */
  readonly headers: IncomingHttpHeaders | Readonly<Record<string, string | string[] | undefined>> | { get(name: string): string | null };
}

/** Options of {@link authenticateJwtSvid} and jwtSvidMiddleware. */
export interface JwtAuthenticationOptions {
  /** The audience(s) this service identifies with; the token's `aud` must contain one. */
  readonly audience: string | readonly string[];
  /** A JwtSource or JwtBundleSet, or a function returning the current set (called per request). */
  readonly bundles: JwtBundleSource | (() => JwtBundleSet | JwtBundleSource);
  /**
   * Decides whether the verified SPIFFE ID may proceed; throws to refuse (403). The authorize*()
   * helpers work here; they receive an empty certificate chain.
   */
  readonly authorizer?: Authorizer;
  /** Leeway for `exp`/`nbf`. Default 30 s. */
  readonly clockSkewMs?: number;
  /** Where the time for `exp`/`nbf` checks comes from. Default systemClock. */
  readonly clock?: Clock;
}

const peers = new WeakMap<object, SpiffeId>();

/**
 * The SPIFFE ID authenticated for this request by authenticateJwtSvid or jwtSvidMiddleware, or
 * undefined. A WeakMap rather than a `req.spiffeId` property: nothing a client sends can set it,
 * and no type augmentation of other libraries' request objects is needed.
 */
export function jwtPeerId(req: object): SpiffeId | undefined {
  return peers.get(req);
}

/** Short, client-safe reasons; details stay in the error message for logs. */
const PUBLIC_REASONS: Partial<Record<JwtErrorKind, string>> = {
  expired: 'token has expired',
  'not-yet-valid': 'token is not valid yet',
  audience: 'token audience not accepted',
  untrusted: 'token not trusted',
  key: 'token not trusted',
  signature: 'token not trusted',
};

function headerValue(headers: RequestWithHeaders['headers'] | undefined): string | string[] | undefined {
  if (headers === undefined || headers === null) return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get('authorization') ?? undefined;
  }
  return (headers as Readonly<Record<string, string | string[] | undefined>>).authorization;
}

/** RFC 6750 §2.1: `Bearer` (case-insensitive) then the token, nothing else. */
export function bearerTokenFrom(req: RequestWithHeaders): string {
  const value = headerValue(req?.headers);
  if (value === undefined || value === '') throw new JwtAuthenticationError(401, MISSING_TOKEN_REASON, 'no Authorization header');
  if (Array.isArray(value)) {
    throw new JwtAuthenticationError(401, 'malformed authorization header', 'more than one Authorization header');
  }
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(value);
  if (match === null) {
    const scheme = /^\S+/.exec(value)?.[0] ?? '';
    if (scheme.toLowerCase() !== 'bearer') {
      throw new JwtAuthenticationError(401, MISSING_TOKEN_REASON, 'the Authorization header does not use the Bearer scheme');
    }
    throw new JwtAuthenticationError(401, 'malformed authorization header', 'the Bearer credentials are malformed');
  }
  return match[1]!;
}

function resolveBundles(bundles: JwtAuthenticationOptions['bundles']): JwtBundleSource {
  return typeof bundles === 'function' ? bundles() : bundles;
}

/**
 * Authenticates `req` by its JWT-SVID and returns the verified SPIFFE ID (also available later
 * through jwtPeerId(req)). Throws JwtAuthenticationError: 401 for a missing or invalid token,
 * 403 when the authorizer refuses the ID. Any other error (e.g. the bundles function throwing)
 * propagates unchanged, as it is a server problem rather than the client's.
 */
export async function authenticateJwtSvid(req: RequestWithHeaders, options: JwtAuthenticationOptions): Promise<SpiffeId> {
  return (await authenticateJwtSvidDetailed(req, options)).id;
}

/** As authenticateJwtSvid, returning every verified claim. */
export async function authenticateJwtSvidDetailed(req: RequestWithHeaders, options: JwtAuthenticationOptions): Promise<ValidatedJwtSvid> {
  const token = bearerTokenFrom(req);
  let svid: ValidatedJwtSvid;
  try {
    svid = await validateJwtSvid(token, {
      audience: options.audience,
      bundles: resolveBundles(options.bundles),
      now: (options.clock ?? systemClock).now(),
      clockSkewMs: options.clockSkewMs,
    });
  } catch (err) {
    if (!(err instanceof JwtError) || err.kind === 'config') throw err;
    throw new JwtAuthenticationError(401, PUBLIC_REASONS[err.kind] ?? 'invalid token', `invalid JWT-SVID: ${err.message}`, { cause: err });
  }
  if (options.authorizer !== undefined) {
    try {
      options.authorizer(svid.id, []);
    } catch (err) {
      throw new JwtAuthenticationError(403, 'forbidden', `${svid.id.toString()} is not authorized: ${messageOf(err)}`, { cause: err });
    }
  }
  peers.set(req, svid.id);
  return svid;
}
