#!/usr/bin/env node
/**
 * An HTTPS client with SPIFFE mTLS from a spire-csi credential folder: undici's request() through
 * the SDK's SpiffeDispatcher, which presents the current SVID and verifies the server's. Both come
 * from @spire-csi/sdk/undici, so the dispatcher and request() are the same undici.
 *
 * Environment:
 *   SPIFFE_CREDENTIAL_FOLDER  the mounted folder (required)
 *   TARGET_URL                https://... to GET (required)
 *   ALLOWED_SPIFFE_ID         accept only a server with this SPIFFE ID, or
 *   ALLOWED_TRUST_DOMAIN      accept any server of this trust domain;
 *                             neither: any server of the client's own trust domain
 *   REQUEST_COUNT             how many requests (default 1; 0 = until stopped)
 *   INTERVAL_MS               pause between requests (default 1000)
 *
 * Prints each response body on stdout. Exits 0 when every request got a 2xx answer, else 1 with
 * the reason on stderr. Rotated credentials are used from the next connection on.
 */
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { URL } from 'node:url';
import { FileSource, TrustDomain, authorizeId, authorizeMemberOf } from '@spire-csi/sdk';
import { SpiffeDispatcher, request } from '@spire-csi/sdk/undici';

const NAME = 'undici-client';
const log = (message) => process.stderr.write(`${NAME}: ${message}\n`);

function targetUrl() {
  const raw = process.env.TARGET_URL?.trim();
  if (!raw) throw new Error('TARGET_URL is required, e.g. https://my-service:8443/');
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`TARGET_URL is not a URL: "${raw}"`);
  }
  if (url.protocol !== 'https:') throw new Error(`TARGET_URL must be an https:// URL, got "${raw}"`);
  return url;
}

function whole(name, fallback) {
  const raw = process.env[name]?.trim() || String(fallback);
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be a whole number, got "${raw}"`);
  return Number(raw);
}

/** Which servers we talk to; `ownId` is our own SPIFFE ID, whose trust domain is the default. */
function serverAuthorizer(ownId) {
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

/** undici wraps the interesting part (TLS alert, refused authorization, reset) in `cause`. */
function reason(err) {
  const parts = [];
  for (let e = err; e instanceof Error && parts.length < 4; e = e.cause) {
    const code = e.code && !e.message.includes(e.code) ? ` [${e.code}]` : '';
    parts.push(`${e.message}${code}`);
  }
  return parts.join(': ');
}

async function main() {
  const url = targetUrl();
  const count = whole('REQUEST_COUNT', 1);
  const intervalMs = whole('INTERVAL_MS', 1000);
  const source = new FileSource(); // reads SPIFFE_CREDENTIAL_FOLDER
  source.on('error', (err) => log(`${err.message} (still using the previous credentials)`));
  source.on('warning', (warning) => log(warning.message));
  const { svid } = await source.ready();
  const { authorizer, allowed } = serverAuthorizer(svid.id);
  log(`calling ${url} as ${svid.id}; accepting ${allowed}`);

  const dispatcher = new SpiffeDispatcher(source, authorizer);
  let stopping = false;
  process.once('SIGTERM', () => (stopping = true));
  process.once('SIGINT', () => (stopping = true));

  let failures = 0;
  for (let i = 1; (count === 0 || i <= count) && !stopping; i++) {
    if (i > 1) await sleep(intervalMs);
    try {
      const { statusCode, body } = await request(url, { dispatcher, headersTimeout: 10_000, bodyTimeout: 10_000 });
      const text = await body.text();
      if (statusCode < 200 || statusCode > 299) throw new Error(`HTTP ${statusCode}: ${text.trim()}`);
      process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
    } catch (err) {
      failures++;
      log(`request ${i} to ${url} failed: ${reason(err)}`);
    }
  }
  await dispatcher.close();
  await source.close();
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((err) => {
  log(err.message);
  process.exit(1);
});
