import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationError, authorizeAny, authorizeId } from '@spire-csi/sdk/authorize';
import {
  TlsError,
  createClientTlsOptions,
  createHttpsAgent,
  createHttpsServer,
  peerSpiffeId,
  type SpiffeHttpsAgentOptions,
  type TlsSettings,
} from '@spire-csi/sdk/tls';
import { X509BundleSet, X509Error } from '@spire-csi/sdk/x509';
import { dnsSansOf } from '../../sdk/src/x509/extensions.js';
import { sdkError } from '../helpers/sdk-errors.js';
import type { MintedSvid } from '../helpers/test-ca.js';
import { domain, httpsGet, identity, listen, material, source, type Domain, type Identity } from './tls-harness.js';

const HOUR = 3_600_000;

let a: Domain;
let b: Domain;
let serverId: Identity;
let clientId: Identity;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(async () => {
  [a, b] = await Promise.all([domain('a.org'), domain('b.org')]);
  [serverId, clientId] = await Promise.all([identity(a, '/server'), identity(a, '/client')]);
});

interface Connection {
  peer: string;
  serial: string | undefined;
  resumed: boolean;
}

/** An SDK server that accepts any a.org/b.org client and records who connected. */
async function sdkServer(id: Identity = serverId) {
  const connections: Connection[] = [];
  const server = createHttpsServer(source(id, a, b), authorizeAny(), {}, (req: IncomingMessage, res: ServerResponse) => {
    res.end(peerSpiffeId(req)?.toString() ?? 'none');
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    connections.push({
      peer: peerSpiffeId(socket)?.toString() ?? 'none',
      serial: socket.getPeerX509Certificate()?.serialNumber,
      resumed: socket.isSessionReused(),
    });
  });
  const listening = await listen(server);
  cleanups.push(listening.close);
  return { port: listening.port, connections };
}

/** A plain https server presenting an arbitrary certificate (one an X509Svid might refuse). */
async function plainServer(minted: MintedSvid) {
  const server = https.createServer({ cert: minted.chainPem, key: minted.keyPem }, (_req, res) => res.end('plain'));
  const listening = await listen(server);
  cleanups.push(listening.close);
  return listening.port;
}

describe('createClientTlsOptions', () => {
  it('connects to an authorized server and presents the client SVID', async () => {
    const { port } = await sdkServer();
    const res = await httpsGet(port, createClientTlsOptions(source(clientId, a), authorizeId('spiffe://a.org/server')));
    expect(res).toMatchObject({ status: 200, body: 'spiffe://a.org/client' });
  });

  it('rejects a server whose ID the authorizer refuses', async () => {
    const { port } = await sdkServer();
    const options = createClientTlsOptions(source(clientId, a), authorizeId('spiffe://a.org/other'));
    await expect(httpsGet(port, options)).rejects.toThrow(AuthorizationError);
  });

  it('ignores the hostname: no DNS/IP SAN, 127.0.0.1 and an unrelated servername both work', async () => {
    expect(dnsSansOf(serverId.svid.leaf)).toEqual([]);
    expect(serverId.svid.leaf.subjectAltName).not.toMatch(/IP Address|DNS:/);
    const { port } = await sdkServer();
    const options = createClientTlsOptions(source(clientId, a), authorizeId('spiffe://a.org/server'));
    expect((await httpsGet(port, options)).status).toBe(200);
    expect((await httpsGet(port, { ...options, servername: 'unrelated.example.com' })).status).toBe(200);
  });

  it('rejects a server of a trust domain the client does not trust', async () => {
    const { port } = await sdkServer(await identity(b, '/server'));
    await expect(httpsGet(port, createClientTlsOptions(source(clientId, a), authorizeAny()))).rejects.toThrow();
  });

  it('rejects a cross-trust-domain forgery even with both bundles loaded', async () => {
    const port = await plainServer(await b.ca.mint('spiffe://a.org/server'));
    const options = createClientTlsOptions(source(clientId, a, b), authorizeAny());
    await expect(httpsGet(port, options)).rejects.toThrow(sdkError(X509Error, 'verification'));
  });

  it('rejects an expired server certificate', async () => {
    const expired = await a.ca.mint('spiffe://a.org/server', {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    const port = await plainServer(expired);
    await expect(httpsGet(port, createClientTlsOptions(source(clientId, a), authorizeAny()))).rejects.toThrow();
  });

  it('rejects a server certificate with two URI SANs', async () => {
    const port = await plainServer(await a.ca.mint('spiffe://a.org/server', { extraUris: ['spiffe://a.org/other'] }));
    const options = createClientTlsOptions(source(clientId, a), authorizeAny());
    await expect(httpsGet(port, options)).rejects.toThrow(sdkError(X509Error, 'verification'));
  });

  it('trusts nothing when the source has no bundles', async () => {
    const { port } = await sdkServer();
    const options = createClientTlsOptions(source(clientId), authorizeAny());
    expect(options.ca).toEqual([]);
    await expect(httpsGet(port, options)).rejects.toThrow();
  });

  it('checks the server against the bundles current at handshake time', async () => {
    const { port } = await sdkServer();
    const src = source(clientId, a);
    const options = createClientTlsOptions(src, authorizeAny());
    src.set({ svid: clientId.svid, bundles: new X509BundleSet() });
    await expect(httpsGet(port, options)).rejects.toThrow(/no bundle for trust domain "a\.org"/);
  });

  it('refuses options that would replace identity, trust or verification', () => {
    const src = source(clientId, a);
    for (const bad of [{ ca: 'x' }, { cert: 'x' }, { session: Buffer.alloc(1) }]) {
      expect(() => createClientTlsOptions(src, authorizeAny(), { tlsSettings: bad as unknown as TlsSettings })).toThrow(
        sdkError(TlsError, 'config'),
      );
    }
    expect(() => createClientTlsOptions(src, authorizeAny(), { tlsSettings: { minVersion: 'TLSv1.1' } })).toThrow(
      /minVersion/,
    );
  });
});

describe('SpiffeHttpsAgent', () => {
  it('never resumes sessions, so every connection is verified', async () => {
    const { port, connections } = await sdkServer();
    const agent = createHttpsAgent(source(clientId, a), authorizeId('spiffe://a.org/server'));
    cleanups.push(() => agent.destroy());
    for (let i = 0; i < 3; i++) expect((await httpsGet(port, { agent })).status).toBe(200);
    expect(connections).toHaveLength(3);
    expect(connections.every((c) => !c.resumed && c.peer === 'spiffe://a.org/client')).toBe(true);
  });

  it('rejects a server the authorizer refuses', async () => {
    const { port } = await sdkServer();
    const agent = createHttpsAgent(source(clientId, a), authorizeId('spiffe://a.org/other'));
    cleanups.push(() => agent.destroy());
    await expect(httpsGet(port, { agent })).rejects.toThrow(AuthorizationError);
  });

  it('uses the new SVID after rotation, dropping pooled keep-alive connections', async () => {
    const { port, connections } = await sdkServer();
    const src = source(clientId, a);
    const agent = createHttpsAgent(src, authorizeAny(), { keepAlive: true });
    cleanups.push(() => agent.destroy());

    expect((await httpsGet(port, { agent })).status).toBe(200);
    expect((await httpsGet(port, { agent })).status).toBe(200);
    expect(connections).toHaveLength(1); // the second request reused the pooled connection

    const rotated = await identity(a, '/client');
    src.set(material(rotated, a));
    expect((await httpsGet(port, { agent })).status).toBe(200);
    expect(connections.map((c) => c.serial)).toEqual([clientId.svid.serialNumber, rotated.svid.serialNumber]);
  });

  it('refuses managed options and unsubscribes on destroy', () => {
    const src = source(clientId, a);
    expect(() => createHttpsAgent(src, authorizeAny(), { ca: 'x' } as unknown as SpiffeHttpsAgentOptions)).toThrow(
      sdkError(TlsError, 'config'),
    );
    const agent = createHttpsAgent(src, authorizeAny());
    expect(src.listenerCount('update')).toBe(1);
    agent.destroy();
    agent.destroy();
    expect(src.listenerCount('update')).toBe(0);
  });
});
