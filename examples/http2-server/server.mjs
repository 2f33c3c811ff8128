#!/usr/bin/env node
/**
 * An HTTP/2 server with SPIFFE mTLS from a spire-csi credential folder, on node:http2
 * (HTTP/1.1 clients are accepted too, through ALPN).
 *
 * Environment:
 *   SPIFFE_CREDENTIAL_FOLDER  the mounted folder (required)
 *   PORT                      port to listen on (default 8443; 0 picks a free one)
 *   ALLOWED_SPIFFE_ID         admit only this client SPIFFE ID, or
 *   ALLOWED_TRUST_DOMAIN      admit any client of this trust domain;
 *                             neither: any client of the server's own trust domain
 *
 * Prints `listening <port>` on stdout once it accepts connections and answers `GET /` with the
 * client's verified SPIFFE ID. Rotated credentials are picked up without a restart.
 */
import process from 'node:process';
import { setTimeout } from 'node:timers';
import { URL } from 'node:url';
import {
  FileSource,
  SPIFFE_AUTHORIZATION_FAILED,
  TrustDomain,
  authorizeId,
  authorizeMemberOf,
  createHttp2SecureServer,
  peerSpiffeId,
} from '@spire-csi/sdk';

const NAME = 'http2-server';
const log = (message) => process.stderr.write(`${NAME}: ${message}\n`);

function listenPort() {
  const raw = process.env.PORT?.trim() || '8443';
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new Error(`PORT must be a number from 0 to 65535, got "${raw}"`);
  }
  return Number(raw);
}

/** Who may call us; `ownId` is our own SPIFFE ID, whose trust domain is the default. */
function clientAuthorizer(ownId) {
  const id = process.env.ALLOWED_SPIFFE_ID?.trim();
  const td = process.env.ALLOWED_TRUST_DOMAIN?.trim();
  if (id && td) throw new Error('set ALLOWED_SPIFFE_ID or ALLOWED_TRUST_DOMAIN, not both');
  try {
    if (id) return { authorizer: authorizeId(id), allowed: id };
    if (td) return { authorizer: authorizeMemberOf(td), allowed: `any member of ${TrustDomain.parse(td).name}` };
  } catch (err) {
    throw new Error(`${id ? 'ALLOWED_SPIFFE_ID' : 'ALLOWED_TRUST_DOMAIN'}: ${err.message}`, { cause: err });
  }
  const own = ownId.trustDomain;
  return { authorizer: authorizeMemberOf(own), allowed: `any member of ${own.name} (our own trust domain)` };
}

async function main() {
  const port = listenPort();
  const source = new FileSource(); // reads SPIFFE_CREDENTIAL_FOLDER
  source.on('update', ({ svid }) => log(`credentials: ${svid.id} serial ${svid.serialNumber}, expires ${svid.notAfter.toISOString()}`));
  // A bad update never replaces good credentials: the server keeps serving the previous ones.
  source.on('error', (err) => log(`${err.message} (still using the previous credentials)`));
  source.on('warning', (warning) => log(warning.message));
  const { svid } = await source.ready();
  const { authorizer, allowed } = clientAuthorizer(svid.id);

  // The compatibility API ((req, res) like node:http) serves HTTP/2 and HTTP/1.1 alike; with the
  // stream API ('stream' event) use peerSpiffeId(stream) instead.
  const server = createHttp2SecureServer(source, authorizer, { allowHTTP1: true }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://localhost').pathname;
    if (path !== '/') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    // Set for every request that got here: unverified or unauthorized clients never do.
    const caller = peerSpiffeId(req);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`${caller}\n`);
  });
  server.on(SPIFFE_AUTHORIZATION_FAILED, (err) => log(`refused a client: ${err.message}`));
  server.on('tlsClientError', (err) => log(`TLS handshake failed: ${err.message}`));
  const sessions = new Set();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, resolve);
  });
  log(`serving as ${svid.id}; admitting ${allowed}`);
  process.stdout.write(`listening ${server.address().port}\n`);

  const shutdown = (signal) => {
    log(`${signal}: shutting down`);
    server.close();
    // GOAWAY: open streams finish, no new ones start.
    for (const session of sessions) session.close();
    void source.close();
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((err) => {
  log(err.message);
  process.exit(1);
});
