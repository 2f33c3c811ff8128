/** One-call constructors for SPIFFE mTLS servers; each is the node constructor plus attachSpiffeTls. */
import type { RequestListener } from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as tls from 'node:tls';
import type { Authorizer } from '../authorize/authorizer.js';
import type { Logger } from '../logger.js';
import type { X509Source } from '../source/x509-source.js';
import { attachSpiffeTls } from './attach-server.js';
import { serverSecureContextOptions } from './server-options.js';
import { rejectManagedOptions, type ManagedTlsOption } from './tls-settings.js';

/** Options of {@link createTlsServer}: Node's, minus the ones the SDK manages. */
export type SpiffeTlsServerOptions = Omit<tls.TlsOptions, ManagedTlsOption> & {
  /** Where refused peers and credential updates are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
};
/** Options of {@link createHttpsServer}: Node's, minus the ones the SDK manages. */
export type SpiffeHttpsServerOptions = Omit<https.ServerOptions, ManagedTlsOption> & {
  /** Where refused peers and credential updates are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
};
/** Options of {@link createHttp2SecureServer}: Node's, minus the ones the SDK manages. */
export type SpiffeHttp2SecureServerOptions = Omit<http2.SecureServerOptions, ManagedTlsOption> & {
  /** Where refused peers and credential updates are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
};

function split<T extends { logger?: Logger }>(options: T, where: string): { logger: Logger | undefined; rest: Omit<T, 'logger'> } {
  const { logger, ...rest } = options;
  rejectManagedOptions(rest, where);
  return { logger, rest };
}

/**
 * A `node:tls` server under SPIFFE mTLS: it presents the source's current SVID, requires client
 * certificates, verifies each client against the bundle of its own trust domain and lets in only
 * those `authorizer` allows. Follows rotations without a restart.
 */
export function createTlsServer(
  source: X509Source,
  authorizer: Authorizer,
  options: SpiffeTlsServerOptions = {},
  secureConnectionListener?: (socket: tls.TLSSocket) => void,
): tls.Server {
  const { logger, rest } = split(options, 'createTlsServer');
  const server = tls.createServer({ ...rest, ...serverSecureContextOptions(source.current(), rest) }, secureConnectionListener);
  attachSpiffeTls(server, source, authorizer, { logger, tlsSettings: rest });
  return server;
}

/** As {@link createTlsServer}, for `node:https`; read the caller with peerSpiffeId(req). */
export function createHttpsServer(
  source: X509Source,
  authorizer: Authorizer,
  options: SpiffeHttpsServerOptions = {},
  requestListener?: RequestListener,
): https.Server {
  const { logger, rest } = split(options, 'createHttpsServer');
  const server = https.createServer({ ...rest, ...serverSecureContextOptions(source.current(), rest) }, requestListener);
  attachSpiffeTls(server, source, authorizer, { logger, tlsSettings: rest });
  return server;
}

/** As {@link createTlsServer}, for `node:http2` (`allowHTTP1` works too). */
export function createHttp2SecureServer(
  source: X509Source,
  authorizer: Authorizer,
  options: SpiffeHttp2SecureServerOptions = {},
  onRequest?: (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void,
): http2.Http2SecureServer {
  const { logger, rest } = split(options, 'createHttp2SecureServer');
  const server = http2.createSecureServer({ ...rest, ...serverSecureContextOptions(source.current(), rest) }, onRequest);
  attachSpiffeTls(server, source, authorizer, { logger, tlsSettings: rest });
  return server;
}
