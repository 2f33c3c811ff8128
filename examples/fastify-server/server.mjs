#!/usr/bin/env node
/**
 * A Fastify 5 server with SPIFFE mTLS from a spire-csi credential folder.
 *
 * Fastify's `https` option builds a TLS context once and cannot follow certificate rotation, so
 * the server comes from `serverFactory` instead: the SDK's createHttpsServer, which swaps the TLS
 * context on every rotation and admits only authorized clients. Routes read the caller with
 * peerSpiffeId(request.raw).
 *
 * Environment:
 *   SPIFFE_CREDENTIAL_FOLDER  the mounted folder (required)
 *   PORT                      port to listen on (default 8443; 0 picks a free one)
 *   HOST                      address to listen on (default 0.0.0.0)
 *   ALLOWED_SPIFFE_ID         admit only this client SPIFFE ID, or
 *   ALLOWED_TRUST_DOMAIN      admit any client of this trust domain;
 *                             neither: any client of the server's own trust domain
 *
 * Prints `listening <port>` on stdout once it accepts connections and answers `GET /` with the
 * client's verified SPIFFE ID.
 */
import process from 'node:process';
import Fastify from 'fastify';
import {
  FileSource,
  SPIFFE_AUTHORIZATION_FAILED,
  TrustDomain,
  authorizeId,
  authorizeMemberOf,
  createHttpsServer,
  peerSpiffeId,
} from '@spire-csi/sdk';

const NAME = 'fastify-server';
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
  const host = process.env.HOST?.trim() || '0.0.0.0';
  const source = new FileSource(); // reads SPIFFE_CREDENTIAL_FOLDER
  source.on('update', ({ svid }) => log(`credentials: ${svid.id} serial ${svid.serialNumber}, expires ${svid.notAfter.toISOString()}`));
  // A bad update never replaces good credentials: the server keeps serving the previous ones.
  source.on('error', (err) => log(`${err.message} (still using the previous credentials)`));
  source.on('warning', (warning) => log(warning.message));
  const { svid } = await source.ready();
  const { authorizer, allowed } = clientAuthorizer(svid.id);

  const app = Fastify({
    serverFactory: (handler) => {
      const server = createHttpsServer(source, authorizer, {}, handler);
      server.on(SPIFFE_AUTHORIZATION_FAILED, (err) => log(`refused a client: ${err.message}`));
      return server;
    },
  });

  app.get('/', async (request, reply) => {
    // Set for every request that got here: unverified or unauthorized clients never do.
    const caller = peerSpiffeId(request.raw);
    return reply.type('text/plain; charset=utf-8').send(`${caller}\n`);
  });

  app.addHook('onClose', async () => {
    await source.close();
  });

  await app.listen({ port, host });
  log(`serving as ${svid.id}; admitting ${allowed}`);
  process.stdout.write(`listening ${app.server.address().port}\n`);

  const shutdown = (signal) => {
    log(`${signal}: shutting down`);
    app.close().then(
      () => process.exit(0),
      (err) => {
        log(`shutdown failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((err) => {
  log(err.message);
  process.exit(1);
});
