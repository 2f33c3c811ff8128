import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { authorizeAny, authorizeId } from '@spire-csi/sdk/authorize';
import { StaticSource } from '@spire-csi/sdk/source';
import { createClientTlsOptions, createHttpsAgent, createHttpsServer, peerSpiffeId } from '@spire-csi/sdk/tls';
import { SpiffeDispatcher, fetch } from '@spire-csi/sdk/undici';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { domain, httpsGet, identity, listen, material, type Domain, type Identity } from './tls-harness.js';

let a: Domain;
let serverId: Identity;
let clientId: Identity;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(async () => {
  a = await domain('a.org');
  [serverId, clientId] = await Promise.all([identity(a, '/server'), identity(a, '/client')]);
});

/** An SDK server on `src`; `/hold` is answered only on release(). Answers with the client serial. */
async function holdingServer(src: StaticSource) {
  const held: (() => void)[] = [];
  const server = createHttpsServer(src, authorizeAny(), {}, (req: IncomingMessage, res: ServerResponse) => {
    const answer = `${peerSpiffeId(req)?.toString()} ${(req.socket as TLSSocket).getPeerX509Certificate()?.serialNumber}`;
    if (req.url === '/hold') held.push(() => res.end(answer));
    else res.end(answer);
  });
  const listening = await listen(server);
  cleanups.push(listening.close);
  return { port: listening.port, url: listening.url, held, release: () => held.splice(0).forEach((r) => r()) };
}

describe('server rotation', () => {
  it('new connections get the new certificate while an in-flight request completes on the old one', async () => {
    const src = new StaticSource(material(serverId, a));
    const srv = await holdingServer(src);
    const client = () => createClientTlsOptions(new StaticSource(material(clientId, a)), authorizeId('spiffe://a.org/server'));

    const inFlight = httpsGet(srv.port, client(), '/hold');
    await waitFor(() => srv.held.length === 1, { message: 'the held request to reach the server' });

    const rotated = await identity(a, '/server', { keyType: 'rsa' });
    src.set(material(rotated, a));
    const fresh = await httpsGet(srv.port, client());
    expect(fresh.status).toBe(200);
    expect(fresh.serverSerial).toBe(rotated.svid.serialNumber);

    srv.release();
    const finished = await inFlight;
    expect(finished.status).toBe(200);
    expect(finished.serverSerial).toBe(serverId.svid.serialNumber);
  });

  it('follows a CA rotation: overlap accepts both generations, then the old root stops verifying', async () => {
    const nextCa = await TestCa.create('a.org');
    const mintFrom = async (ca: TestCa, path: string) => {
      const minted = await ca.mint(`spiffe://a.org${path}`);
      return X509Svid.fromDer(minted.chainDer, minted.keyDer);
    };
    const [newServer, newClient] = await Promise.all([mintFrom(nextCa, '/server'), mintFrom(nextCa, '/client')]);
    const both = new X509BundleSet([new X509Bundle('a.org', [a.ca.rootCert, nextCa.rootCert])]);
    const onlyNew = new X509BundleSet([new X509Bundle('a.org', [nextCa.rootCert])]);

    const src = new StaticSource(material(serverId, a));
    const srv = await holdingServer(src);
    const oldClient = createClientTlsOptions(new StaticSource({ svid: clientId.svid, bundles: both }), authorizeAny());
    const nextClient = createClientTlsOptions(new StaticSource({ svid: newClient, bundles: onlyNew }), authorizeAny());

    src.set({ svid: newServer, bundles: both });
    expect((await httpsGet(srv.port, oldClient)).body).toBe(`spiffe://a.org/client ${clientId.svid.serialNumber}`);
    expect((await httpsGet(srv.port, nextClient)).body).toBe(`spiffe://a.org/client ${newClient.serialNumber}`);

    src.set({ svid: newServer, bundles: onlyNew });
    await expect(httpsGet(srv.port, oldClient)).rejects.toThrow();
    expect((await httpsGet(srv.port, nextClient)).status).toBe(200);
  });
});

describe('many rotations', () => {
  it('keep one listener per consumer and leave every consumer working', async () => {
    const serverSrc = new StaticSource(material(serverId, a));
    const srv = await holdingServer(serverSrc);
    const clientSrc = new StaticSource(material(clientId, a));
    const agent = createHttpsAgent(clientSrc, authorizeAny(), { keepAlive: true });
    const dispatcher = new SpiffeDispatcher(clientSrc, authorizeAny());
    cleanups.push(() => agent.destroy(), () => dispatcher.destroy());

    const ids = await Promise.all([identity(a, '/client'), identity(a, '/client'), identity(a, '/client')]);
    const serverIds = await Promise.all([identity(a, '/server'), identity(a, '/server')]);
    for (let i = 0; i < 1000; i++) {
      clientSrc.set(material(ids[i % ids.length]!, a));
      serverSrc.set(material(serverIds[i % serverIds.length]!, a));
      if (i % 100 === 0) {
        // Traffic in between, so rotations also retire agents and pooled connections that were used.
        expect((await httpsGet(srv.port, { agent })).status).toBe(200);
        expect((await fetch(srv.url, { dispatcher })).status).toBe(200);
      }
    }
    expect(clientSrc.listenerCount('update')).toBe(2);
    expect(serverSrc.listenerCount('update')).toBe(1);

    const last = ids[999 % ids.length]!;
    expect((await httpsGet(srv.port, { agent })).body).toBe(`spiffe://a.org/client ${last.svid.serialNumber}`);
    expect(await (await fetch(srv.url, { dispatcher })).text()).toBe(`spiffe://a.org/client ${last.svid.serialNumber}`);
  });
});
