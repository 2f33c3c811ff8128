/**
 * JWT-SVID authentication as `(req, res, next)` middleware for node:http and express (and
 * connect-style frameworks). On success the SPIFFE ID is available via jwtPeerId(req) and next()
 * is called; otherwise the response is ended with 401/403, a WWW-Authenticate header and a short
 * JSON reason (never the token).
 *
 * express:
 *
 *   app.use(jwtSvidMiddleware({ audience: 'api', bundles: source, authorizer: authorizeMemberOf('example.org') }));
 *   app.get('/items', (req, res) => res.json({ caller: jwtPeerId(req)?.toString() }));
 *
 * node:http:
 *
 *   const auth = jwtSvidMiddleware({ audience: 'api', bundles: source });
 *   http.createServer((req, res) => auth(req, res, (err) => (err ? fail(res, err) : handle(req, res))));
 *
 * fastify: use authenticateJwtSvid in a `preHandler` hook (see authenticate.ts), so fastify's
 * reply stays in charge of the response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { silentLogger, type Logger } from '../logger.js';
import { authenticateJwtSvid, type JwtAuthenticationOptions } from './authenticate.js';
import { messageOf } from '../internal/error-text.js';
import { JwtAuthenticationError } from './errors.js';

/** Options of {@link jwtSvidMiddleware}. */
export interface JwtSvidMiddlewareOptions extends JwtAuthenticationOptions {
  /** Rejections are logged at debug (401) / info (403), with the reason but never the token. */
  readonly logger?: Logger;
}

/** connect/express `next`: called without an argument to go on, with one for a server-side error. */
export type JwtSvidNextFunction = (err?: unknown) => void;
/** A `(req, res, next)` middleware for node:http, express and connect. */
export type JwtSvidMiddleware = (req: IncomingMessage, res: ServerResponse, next: JwtSvidNextFunction) => void;

function refuse(res: ServerResponse, error: JwtAuthenticationError): void {
  if (res.headersSent || res.writableEnded) {
    res.end();
    return;
  }
  const body = JSON.stringify({ error: error.statusCode === 401 ? 'unauthorized' : 'forbidden', reason: error.reason });
  res.writeHead(error.statusCode, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'www-authenticate': error.wwwAuthenticate,
    'cache-control': 'no-store',
  });
  res.end(body);
}

/**
 * `(req, res, next)` middleware that lets in requests with a valid JWT-SVID for `options.audience`
 * whose SPIFFE ID `options.authorizer` allows, and answers the others with 401/403 and a short JSON
 * reason (never the token). Read the caller with `jwtPeerId(req)`.
 */
export function jwtSvidMiddleware(options: JwtSvidMiddlewareOptions): JwtSvidMiddleware {
  const logger = options.logger ?? silentLogger;
  return (req, res, next) => {
    authenticateJwtSvid(req, options).then(
      (id) => {
        logger.debug({ spiffeId: id.toString(), method: req.method, url: req.url }, 'jwtauth: authenticated JWT-SVID');
        next();
      },
      (err: unknown) => {
        if (!(err instanceof JwtAuthenticationError)) {
          // A server-side problem (bad options, a bundles callback that threw): the framework's
          // error handling decides, not a 401 that would blame the client.
          next(err);
          return;
        }
        const log = { method: req.method, url: req.url, status: err.statusCode, error: messageOf(err) };
        if (err.statusCode === 403) logger.info(log, 'jwtauth: request refused');
        else logger.debug(log, 'jwtauth: request not authenticated');
        refuse(res, err);
      },
    );
  };
}
