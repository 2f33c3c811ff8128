/**
 * An undici interceptor that presents the workload's JWT-SVID as `Authorization: Bearer <token>`
 * (JWT-SVID.md §5.2), but only to the origins it was configured for: a bearer token sent anywhere
 * else can be replayed by whoever receives it. The token is read from the provider on every
 * request, so a refreshed token is used by the next request without rebuilding anything.
 *
 * Usage (undici 7):
 *
 *   const source = new JwtSource('/var/run/secrets/spiffe');
 *   await source.ready();
 *   const dispatcher = new Agent().compose(
 *     bearerTokenInterceptor(source, { origins: ['https://api.internal:8443'], audience: 'api' }),
 *   );
 *   await request('https://api.internal:8443/v1/items', { dispatcher });
 *
 * Compose it before undici's redirect interceptor (`compose(bearerTokenInterceptor(...),
 * interceptors.redirect())`) so every redirected hop is checked against the origin list again.
 * A request that already carries an Authorization header is left as it is: an explicit header
 * is the caller's decision.
 */
import type { Dispatcher } from 'undici';
import { messageOf } from '../internal/error-text.js';
import { HttpAuthError } from './errors.js';

/** Anything that returns the current token, e.g. a JwtSource. */
export interface BearerTokenProvider {
  /** The current token for `audience`; throws when there is none. */
  getToken(audience?: string): string;
}

/** Options of {@link bearerTokenInterceptor}. */
export interface BearerTokenInterceptorOptions {
  /** Origins (`https://host[:port]`) that receive the token. Nothing else ever does. */
  readonly origins: readonly (string | URL)[];
  /**
   * Passed to `getToken(audience)`; a JwtSource then sends only a token minted for exactly this
   * audience. Name it: without it a JwtSource serves only a folder's one single-audience token.
   */
  readonly audience?: string;
}

type Headers = Dispatcher.DispatchOptions['headers'];

function parseOrigin(value: string | URL): string {
  let url: URL;
  try {
    url = value instanceof URL ? value : new URL(value);
  } catch (err) {
    throw new HttpAuthError('config', `origin ${JSON.stringify(String(value))} is not a URL: ${messageOf(err)}`, { cause: err });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new HttpAuthError('config', `origin ${JSON.stringify(url.href)} must be http: or https:`);
  }
  // A path, query or credentials would suggest a narrower scope than an origin check can enforce.
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new HttpAuthError('config', `origin ${JSON.stringify(url.href)} must be scheme://host[:port] only`);
  }
  return url.origin;
}

/** The request's origin normalized like the configured ones, or undefined when it has none. */
function requestOrigin(origin: string | URL | undefined): string | undefined {
  if (origin === undefined) return undefined;
  try {
    return (origin instanceof URL ? origin : new URL(origin)).origin;
  } catch {
    return undefined;
  }
}

function hasAuthorization(headers: Headers): boolean {
  if (headers === undefined || headers === null) return false;
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) if (String(headers[i]).toLowerCase() === 'authorization') return true;
    return false;
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [name] of headers as Iterable<[string, unknown]>) if (String(name).toLowerCase() === 'authorization') return true;
    return false;
  }
  return Object.keys(headers).some((name) => name.toLowerCase() === 'authorization');
}

/** A copy of `headers` in the same form with `authorization` added; the caller's object is not mutated. */
function withAuthorization(headers: Headers, value: string): Headers {
  if (headers === undefined || headers === null) return { authorization: value };
  if (Array.isArray(headers)) return [...(headers as string[]), 'authorization', value];
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return [...(headers as Iterable<[string, string | string[] | undefined]>), ['authorization', value]];
  }
  return { ...(headers as Record<string, string | string[]>), authorization: value };
}

/** Characters a JWS compact serialization can contain; anything else would corrupt the header. */
const TOKEN_SYNTAX = /^[A-Za-z0-9_.-]+$/;

/**
 * An undici interceptor that adds `Authorization: Bearer <token>` from `provider`, read per request,
 * to requests for the listed origins only. Compose it onto a dispatcher:
 * `dispatcher.compose(bearerTokenInterceptor(jwtSource, { origins, audience }))`. Throws an
 * {@link HttpAuthError} (`config`) for bad options; at request time, a provider without a token
 * fails the request rather than sending it unauthenticated.
 */
export function bearerTokenInterceptor(
  provider: BearerTokenProvider,
  options: BearerTokenInterceptorOptions,
): Dispatcher.DispatcherComposeInterceptor {
  if (typeof provider?.getToken !== 'function') throw new HttpAuthError('config', 'a token provider with getToken() is required (e.g. a JwtSource)');
  const origins = options?.origins;
  if (!Array.isArray(origins) || origins.length === 0) {
    throw new HttpAuthError('config', 'options.origins must list at least one origin; the token is never sent to other origins');
  }
  const allowed = new Set(origins.map(parseOrigin));
  const audience = options.audience;
  return (dispatch) =>
    function bearerDispatch(opts, handler) {
      const origin = requestOrigin(opts.origin);
      if (origin === undefined || !allowed.has(origin) || hasAuthorization(opts.headers)) return dispatch(opts, handler);
      // Thrown synchronously: undici's request()/fetch() turn it into a rejected promise, so a
      // source that is not ready fails the request instead of sending it unauthenticated.
      const token = audience === undefined ? provider.getToken() : provider.getToken(audience);
      if (typeof token !== 'string' || !TOKEN_SYNTAX.test(token)) {
        throw new HttpAuthError('token', 'the token provider returned something that is not a compact JWS');
      }
      return dispatch({ ...opts, headers: withAuthorization(opts.headers, `Bearer ${token}`) }, handler);
    };
}
