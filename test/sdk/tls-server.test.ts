import type { IncomingMessage, ServerResponse } from 'node:http';
import * as http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '@spire-csi/sdk';
import { AuthorizationError, authorizeAny, authorizeId, authorizeIf, authorizeMemberOf, type Authorizer } from '@spire-csi/sdk/authorize';
import { StaticSource, type X509Source } from '@spire-csi/sdk/source';
import {
  SPIFFE_AUTHORIZATION_FAILED,
  TlsError,
  attachSpiffeTls,
  createClientTlsOptions,
  createHttp2SecureServer,
  createHttpsServer,
  createTlsServer,
  peerSpiffeId,
  type TlsSettings,
} from '@spire-csi/sdk/tls';
import { X509BundleSet, X509Error, X509Svid } from '@spire-csi/sdk/x509';
import { silentLogger } from '../../sdk/src/logger.js';
import { sdkError } from '../helpers/sdk-errors.js';
import * as tls from 'node:tls';
import { waitFor } from '../helpers/wait-for.js';
import {
  domain,
  httpsGet,
  identity,
  listen,
  material,
  rawClientOptions,
  source,
  tlsProbe,
  type Domain,
  type Identity,
} from './tls-harness.js';

const HOUR = 3_600_000;

let a: Domain;
let b: Domain;
let serverId: Identity;
let clientA: Identity;
let clientB: Identity;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(async () => {
  [a, b] = await Promise.all([domain('a.org'), domain('b.org')]);
  [serverId, clientA, clientB] = await Promise.all([
    identity(a, '/server'),
    identity(a, '/client'),
    identity(b, '/client'),
  ]);
});

interface Seen {
  requests: string[];
  failures: Error[];
  tlsClientErrors: Error[];
}

async function startHttps(src: X509Source, authorizer: Authorizer, logger?: Logger) {
  const seen: Seen = { requests: [], failures: [], tlsClientErrors: [] };
  const server = createHttpsServer(src, authorizer, { logger }, (req: IncomingMessage, res: ServerResponse) => {
    const peer = peerSpiffeId(req)?.toString() ?? 'none';
    seen.requests.push(peer);
    res.end(`hello ${peer}`);
  });
  server.on(SPIFFE_AUTHORIZATION_FAILED, (err: Error) => seen.failures.push(err));
  server.on('tlsClientError', (err: Error) => seen.tlsClientErrors.push(err));
  const listening = await listen(server);
  cleanups.push(listening.close);
  return { server, port: listening.port, seen };
}

/** A client that trusts the server's domain and accepts any verified server. */
function sdkClient(id: Identity, ...trusted: Domain[]) {
  return createClientTlsOptions(source(id, ...trusted), authorizeAny());
}

describe('SPIFFE https server', () => {
  it('serves an authorized client and exposes its SPIFFE ID', async () => {
    const { port, seen } = await startHttps(source(serverId, a), authorizeId('spiffe://a.org/client'));
    const res = await httpsGet(port, sdkClient(clientA, a));
    expect(res.status).toBe(200);
    expect(res.body).toBe('hello spiffe://a.org/client');
    expect(seen.requests).toEqual(['spiffe://a.org/client']);
    expect(seen.failures).toEqual([]);
  });

  it('wrong-id: the authorizer refuses, the handler never runs, the rejection is logged', async () => {
    const warnings: { obj: Record<string, unknown>; msg: string | undefined }[] = [];
    const logger: Logger = {
      ...silentLogger,
      warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }),
    };
    const { port, seen } = await startHttps(source(serverId, a), authorizeId('spiffe://a.org/someone-else'), logger);
    await expect(httpsGet(port, sdkClient(clientA, a))).rejects.toThrow();
    await waitFor(() => seen.failures.length === 1, { message: 'authorization failure event' });
    expect(seen.failures[0]).toBeInstanceOf(AuthorizationError);
    expect(seen.requests).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toBe('tls: peer rejected');
    expect(warnings[0]!.obj).toMatchObject({ remoteAddress: '127.0.0.1', resumed: false });
    expect(String(warnings[0]!.obj.reason)).toMatch(/^authorize: peer spiffe:\/\/a\.org\/client is not/);
    expect(JSON.stringify(warnings)).not.toContain('PRIVATE KEY');
  });

  it('wrong-trust-domain: a client of a domain the server does not federate with is refused', async () => {
    const { port, seen } = await startHttps(source(serverId, a), authorizeAny());
    await expect(httpsGet(port, sdkClient(clientB, a))).rejects.toThrow();
    expect(seen.requests).toEqual([]);
  });

  it.each([
    ['signed by the b.org CA', () => b.ca.mint('spiffe://a.org/client')],
    ['issued by a b.org intermediate', async () => (await b.ca.intermediate()).mint('spiffe://a.org/client')],
  ])('cross-trust-domain forgery: a spiffe://a.org ID %s is refused with both bundles loaded', async (_how, mintForged) => {
    const forged = await mintForged();
    const { port, seen } = await startHttps(source(serverId, a, b), authorizeAny());
    const outcome = await tlsProbe(port, rawClientOptions(forged, a), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(outcome.data).toBe('');
    // OpenSSL's union-of-roots filter lets it through; the per-domain check is what refuses it.
    await waitFor(() => seen.failures.length === 1, { message: 'authorization failure event' });
    expect(seen.failures[0]).toEqual(sdkError(X509Error, 'verification'));
    expect(seen.failures[0]!.message).toMatch(/a\.org/);
    expect(seen.requests).toEqual([]);
  });

  it('serves a client whose SVID is issued by an intermediate (the server sees the whole presented chain)', async () => {
    const minted = await (await a.ca.intermediate()).mint('spiffe://a.org/via-intermediate');
    const client = { minted, svid: X509Svid.fromDer(minted.chainDer, minted.keyDer) };
    const { port, seen } = await startHttps(source(serverId, a), authorizeAny());
    const res = await httpsGet(port, sdkClient(client, a));
    expect(res.body).toBe('hello spiffe://a.org/via-intermediate');
    expect(seen.failures).toEqual([]);
  });

  it("keeps the application's own keylog listener working", async () => {
    const { server, port } = await startHttps(source(serverId, a), authorizeAny());
    const lines: string[] = [];
    server.on('keylog', (line: Buffer) => lines.push(line.toString()));
    expect((await httpsGet(port, sdkClient(clientA, a))).status).toBe(200);
    expect(lines.some((line) => /^(CLIENT_RANDOM|CLIENT_HANDSHAKE_TRAFFIC_SECRET) /.test(line))).toBe(true);
  });

  it('expired client certificate is refused', async () => {
    const expired = await a.ca.mint('spiffe://a.org/client', {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    const { port, seen } = await startHttps(source(serverId, a), authorizeAny());
    const outcome = await tlsProbe(port, rawClientOptions(expired, a), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(outcome.data).toBe('');
    expect(seen.requests).toEqual([]);
  });

  it('ca-cert-as-leaf is refused', async () => {
    const caLeaf = await a.ca.mint('spiffe://a.org/client', {
      isCa: true,
      keyUsages: ['digitalSignature', 'keyCertSign'],
    });
    const { port, seen } = await startHttps(source(serverId, a), authorizeAny());
    const outcome = await tlsProbe(port, rawClientOptions(caLeaf, a), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(outcome.data).toBe('');
    expect(seen.requests).toEqual([]);
    expect(seen.failures.length + seen.tlsClientErrors.length).toBeGreaterThan(0);
  });

  it('two-uri-sans: a certificate with two SPIFFE IDs is refused', async () => {
    const twoIds = await a.ca.mint('spiffe://a.org/client', { extraUris: ['spiffe://a.org/admin'] });
    const { port, seen } = await startHttps(source(serverId, a), authorizeAny());
    const outcome = await tlsProbe(port, rawClientOptions(twoIds, a), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(outcome.data).toBe('');
    await waitFor(() => seen.failures.length === 1, { message: 'authorization failure event' });
    expect(seen.failures[0]).toEqual(sdkError(X509Error, 'verification'));
    expect(seen.requests).toEqual([]);
  });

  it('no client certificate is refused', async () => {
    const { port, seen } = await startHttps(source(serverId, a), authorizeAny());
    const outcome = await tlsProbe(port, rawClientOptions(undefined, a), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(outcome.data).toBe('');
    expect(seen.requests).toEqual([]);
  });

  it('de-federation: once b.org is removed, the next handshake from b.org fails while a.org still works', async () => {
    const src = source(serverId, a, b);
    const { port, seen } = await startHttps(src, authorizeMemberOf('a.org', 'b.org'));
    expect((await httpsGet(port, sdkClient(clientB, a))).status).toBe(200);

    src.set(material(serverId, a));
    await expect(httpsGet(port, sdkClient(clientB, a))).rejects.toThrow();
    expect((await httpsGet(port, sdkClient(clientA, a))).status).toBe(200);
    expect(seen.requests).toEqual(['spiffe://b.org/client', 'spiffe://a.org/client']);
  });

  it('a source that stops trusting every domain passes ca: [] (never the system roots)', async () => {
    const src = source(serverId, a);
    const { port, seen } = await startHttps(src, authorizeAny());
    src.set({ svid: serverId.svid, bundles: new X509BundleSet() });
    await expect(httpsGet(port, sdkClient(clientA, a))).rejects.toThrow();
    expect(seen.requests).toEqual([]);
  });
});

describe('SPIFFE tls server', () => {
  async function startTls(src: X509Source, authorizer: Authorizer) {
    const seen = { connections: [] as string[], data: [] as string[], failures: [] as Error[], late: [] as boolean[] };
    const server = createTlsServer(src, authorizer, {}, (socket: TLSSocket) => {
      seen.connections.push(peerSpiffeId(socket)?.toString() ?? 'none');
      socket.on('data', (chunk: Buffer) => seen.data.push(chunk.toString()));
      socket.end('welcome\n');
    });
    server.on(SPIFFE_AUTHORIZATION_FAILED, (err: Error) => seen.failures.push(err));
    // Added after attach: runs after the check, and must only ever see live sockets or dead ones.
    server.on('secureConnection', (socket: TLSSocket) => seen.late.push(socket.destroyed));
    const listening = await listen(server);
    cleanups.push(listening.close);
    return { server, port: listening.port, seen };
  }

  it('destroys a refused socket before the application listener sees it or a byte is read', async () => {
    let allow = true;
    const gate = authorizeIf(() => allow, 'allowed by the test');
    const { port, seen } = await startTls(source(serverId, a), gate);

    const ok = await tlsProbe(port, sdkClient(clientA, a));
    expect(ok.data).toBe('welcome\n');
    expect(seen.connections).toEqual(['spiffe://a.org/client']);

    allow = false;
    const refused = await tlsProbe(port, sdkClient(clientA, a), 'secret request bytes');
    expect(refused.data).toBe('');
    await waitFor(() => seen.failures.length === 1, { message: 'authorization failure event' });
    expect(seen.connections).toEqual(['spiffe://a.org/client']);
    expect(seen.data.join('')).not.toContain('secret');
    expect(seen.late).toEqual([false, true]);
  });

  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`re-verifies resumed sessions (${maxVersion}): a resumed connection the authorizer now refuses is destroyed`, async () => {
      let allow = true;
      const gate = authorizeIf(() => allow, 'allowed by the test');
      const { server, port, seen } = await startTls(source(serverId, a), gate);
      const resumed: boolean[] = [];
      server.prependListener('secureConnection', (socket: TLSSocket) => resumed.push(socket.isSessionReused()));
      const client = { ...sdkClient(clientA, a), maxVersion };

      const first = await tlsProbe(port, client);
      expect(first.session).toBeDefined();
      const second = await tlsProbe(port, { ...client, session: first.session });
      expect(second.sessionReused).toBe(true);
      expect(second.data).toBe('welcome\n');
      expect(seen.connections).toEqual(['spiffe://a.org/client', 'spiffe://a.org/client']);

      allow = false;
      const third = await tlsProbe(port, { ...client, session: second.session ?? first.session });
      expect(third.data).toBe('');
      expect(resumed).toEqual([false, true, true]);
      await waitFor(() => seen.failures.length === 1, { message: 'authorization failure event' });
      expect(seen.connections).toHaveLength(2);
    });

    it(`accepts a resumed session (${maxVersion}) from an SVID issued by an intermediate`, async () => {
      // A resumed session carries only the leaf; the intermediate must come from the earlier handshake.
      const minted = await (await a.ca.intermediate()).mint('spiffe://a.org/via-intermediate');
      const client = { minted, svid: X509Svid.fromDer(minted.chainDer, minted.keyDer) };
      const { port, seen } = await startTls(source(serverId, a), authorizeAny());
      const options = { ...sdkClient(client, a), maxVersion };
      const first = await tlsProbe(port, options);
      const second = await tlsProbe(port, { ...options, session: first.session });
      expect(second.sessionReused).toBe(true);
      expect(second.data).toBe('welcome\n');
      expect(seen.failures).toEqual([]);
      expect(seen.connections).toEqual(['spiffe://a.org/via-intermediate', 'spiffe://a.org/via-intermediate']);
    });
  }

  it('resumption after a trust change is refused: the session is not reused and the full handshake fails', async () => {
    const src = source(serverId, a, b);
    const { port, seen } = await startTls(src, authorizeAny());
    const first = await tlsProbe(port, sdkClient(clientB, a));
    expect(first.data).toBe('welcome\n');
    expect(first.session).toBeDefined();

    src.set(material(serverId, a));
    const again = await tlsProbe(port, { ...sdkClient(clientB, a), session: first.session });
    expect(again.sessionReused).toBe(false);
    expect(again.data).toBe('');
    expect(seen.connections).toEqual(['spiffe://b.org/client']);
  });

  it('rotates session ticket keys on every source update', async () => {
    const src = source(serverId, a);
    const { server } = await startTls(src, authorizeAny());
    const before = server.getTicketKeys();
    src.set(material(serverId, a));
    expect(server.getTicketKeys().equals(before)).toBe(false);
  });

  it('a trust change that keeps the client trusted still forces a full handshake', async () => {
    const src = source(serverId, a);
    const { port, seen } = await startTls(src, authorizeAny());
    const first = await tlsProbe(port, sdkClient(clientA, a));
    src.set(material(serverId, a, b));
    const again = await tlsProbe(port, { ...sdkClient(clientA, a), session: first.session });
    expect(again.sessionReused).toBe(false);
    expect(again.data).toBe('welcome\n');
    expect(seen.connections).toHaveLength(2);
  });
});

describe('SPIFFE http2 secure server', () => {
  function h2Get(port: number, options: tls.ConnectionOptions): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${port}`, options);
      session.on('error', reject);
      const req = session.request({ ':path': '/' });
      let status = 0;
      const chunks: Buffer[] = [];
      req.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        session.close();
        // A reset connection ends the stream without a response rather than with an error.
        if (status === 0) reject(new Error('http2 stream ended without a response'));
        else resolve({ status, body: Buffer.concat(chunks).toString() });
      });
      req.on('error', (err) => {
        session.destroy();
        reject(err);
      });
      req.end();
    });
  }

  it('serves an authorized client, refuses others before a session exists', async () => {
    const seen = { sessions: 0, requests: [] as string[], failures: [] as Error[] };
    const server = createHttp2SecureServer(source(serverId, a), authorizeId('spiffe://a.org/client'), {}, (req, res) => {
      seen.requests.push(peerSpiffeId(req)?.toString() ?? 'none');
      res.end('h2 ok');
    });
    server.on('session', () => seen.sessions++);
    server.on(SPIFFE_AUTHORIZATION_FAILED, (err: Error) => seen.failures.push(err));
    const listening = await listen(server);
    cleanups.push(listening.close);

    const res = await h2Get(listening.port, sdkClient(clientA, a));
    expect(res).toEqual({ status: 200, body: 'h2 ok' });
    expect(seen.requests).toEqual(['spiffe://a.org/client']);

    const intruder = await identity(a, '/intruder');
    await expect(h2Get(listening.port, sdkClient(intruder, a))).rejects.toThrow();
    await waitFor(() => seen.failures.length === 1, { message: 'authorization failure event' });
    expect(seen.sessions).toBe(1);
    expect(seen.requests).toEqual(['spiffe://a.org/client']);
  });
});

describe('attachSpiffeTls', () => {
  it('takes over a server created without credentials and refuses double attachment', async () => {
    const { createServer } = await import('node:https');
    const server = createServer((req, res) => res.end(peerSpiffeId(req)?.toString() ?? 'none'));
    attachSpiffeTls(server, source(serverId, a), authorizeAny());
    expect(() => attachSpiffeTls(server, source(serverId, a), authorizeAny())).toThrow(sdkError(TlsError, 'config'));
    const listening = await listen(server);
    cleanups.push(listening.close);
    const res = await httpsGet(listening.port, sdkClient(clientA, a));
    expect(res.body).toBe('spiffe://a.org/client');
    await expect(
      tlsProbe(listening.port, rawClientOptions(undefined, a), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    ).resolves.toMatchObject({ data: '' });
  });

  it('refuses options that would replace identity or trust', () => {
    const bad = { ca: 'x' } as unknown as TlsSettings;
    expect(() => createHttpsServer(source(serverId, a), authorizeAny(), bad)).toThrow(/"ca" is managed/);
    const server = tls.createServer();
    expect(() => attachSpiffeTls(server, source(serverId, a), authorizeAny(), { tlsSettings: bad })).toThrow(sdkError(TlsError, 'config'));
  });

  it('unsubscribes from the source when the server closes', async () => {
    const src = new StaticSource(material(serverId, a));
    const server = createHttpsServer(src, authorizeAny());
    const listening = await listen(server);
    expect(src.listenerCount('update')).toBe(1);
    await listening.close();
    expect(src.listenerCount('update')).toBe(0);
  });
});
