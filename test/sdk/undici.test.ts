import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { errors, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationError, authorizeAny, authorizeId, createHttpsServer, peerSpiffeId } from '@spire-csi/sdk';
import { bearerTokenInterceptor } from '@spire-csi/sdk/http';
import { SpiffeDispatcher, fetch, request } from '@spire-csi/sdk/undici';
import { waitFor } from '../helpers/wait-for.js';
import { domain, identity, listen, material, source, type Domain, type Identity } from './tls-harness.js';

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

/**
 * Answers with "<peer id> <client cert serial>". `/hold` is answered only when release() is
 * called, to keep a request in flight across a rotation.
 */
async function server() {
  const held: (() => void)[] = [];
  const closedSerials: string[] = [];
  const srv = createHttpsServer(source(serverId, a), authorizeAny(), {}, (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as TLSSocket;
    const answer =
      req.url === '/authorization'
        ? String(req.headers.authorization)
        : `${peerSpiffeId(req)?.toString() ?? 'none'} ${socket.getPeerX509Certificate()?.serialNumber ?? '-'}`;
    if (req.url === '/hold') held.push(() => res.end(answer));
    else res.end(answer);
  });
  srv.on('secureConnection', (socket: TLSSocket) => {
    const serial = socket.getPeerX509Certificate()?.serialNumber ?? '-';
    socket.on('close', () => closedSerials.push(serial));
  });
  const listening = await listen(srv);
  cleanups.push(listening.close);
  return {
    url: listening.url,
    held,
    closedSerials,
    release: () => held.splice(0).forEach((respond) => respond()),
  };
}

function dispatcher(src = source(clientId, a), authorizer = authorizeId('spiffe://a.org/server')): SpiffeDispatcher {
  const d = new SpiffeDispatcher(src, authorizer);
  cleanups.push(() => d.destroy());
  return d;
}

async function fetchText(url: string, d: SpiffeDispatcher): Promise<string> {
  const res = await fetch(url, { dispatcher: d });
  expect(res.status).toBe(200);
  return res.text();
}

describe('SpiffeDispatcher', () => {
  it('works with undici fetch', async () => {
    const { url } = await server();
    expect(await fetchText(url, dispatcher())).toBe(`spiffe://a.org/client ${clientId.svid.serialNumber}`);
  });

  it('works with undici request', async () => {
    const { url } = await server();
    const res = await request(url, { dispatcher: dispatcher() });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toMatch(/^spiffe:\/\/a\.org\/client /);
  });

  it('works as the global dispatcher', async () => {
    const { url } = await server();
    const previous = getGlobalDispatcher();
    setGlobalDispatcher(dispatcher());
    try {
      const res = await fetch(url);
      expect(await res.text()).toMatch(/^spiffe:\/\/a\.org\/client /);
    } finally {
      setGlobalDispatcher(previous);
    }
  });

  it('rejects a server whose ID the authorizer refuses', async () => {
    const { url } = await server();
    const d = dispatcher(source(clientId, a), authorizeId('spiffe://a.org/not-the-server'));
    await expect(request(url, { dispatcher: d })).rejects.toThrow(AuthorizationError);
    const failure = await fetch(url, { dispatcher: d }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((failure as Error).cause).toBeInstanceOf(AuthorizationError);
  });

  it('switches to the new SVID on rotation without failing requests before, during or after', async () => {
    const srv = await server();
    const src = source(clientId, a);
    const d = dispatcher(src);
    const oldSerial = clientId.svid.serialNumber;

    expect(await fetchText(srv.url, d)).toBe(`spiffe://a.org/client ${oldSerial}`);
    const inFlight = fetchText(`${srv.url}/hold`, d);
    await waitFor(() => srv.held.length === 1, { message: 'the held request to reach the server' });

    const rotated = await identity(a, '/client');
    src.set(material(rotated, a));
    expect(await fetchText(srv.url, d)).toBe(`spiffe://a.org/client ${rotated.svid.serialNumber}`);

    srv.release();
    expect(await inFlight).toBe(`spiffe://a.org/client ${oldSerial}`);
    expect(await fetchText(srv.url, d)).toBe(`spiffe://a.org/client ${rotated.svid.serialNumber}`);
    // The retired agent closes its connections once its last request is done.
    await waitFor(() => srv.closedSerials.includes(oldSerial), { message: 'the old connection to close' });
    expect(srv.closedSerials).not.toContain(rotated.svid.serialNumber);
  });

  it('close() is idempotent, unsubscribes, and later requests fail', async () => {
    const { url } = await server();
    const src = source(clientId, a);
    const d = new SpiffeDispatcher(src, authorizeAny());
    expect(src.listenerCount('update')).toBe(1);
    expect(await fetchText(url, d)).toMatch(/^spiffe:/);
    await Promise.all([d.close(), d.close()]);
    await d.close();
    expect(d.closed).toBe(true);
    expect(src.listenerCount('update')).toBe(0);
    // undici reports a closed-and-drained agent as destroyed.
    await expect(request(url, { dispatcher: d })).rejects.toSatisfy(
      (err) => err instanceof errors.ClientClosedError || err instanceof errors.ClientDestroyedError,
    );
    src.set(material(clientId, a)); // no longer followed: must not throw or create agents
    await d.destroy();
    await d.destroy();
  });

  it('destroy() aborts in-flight requests and unsubscribes', async () => {
    const srv = await server();
    const src = source(clientId, a);
    const d = new SpiffeDispatcher(src, authorizeAny());
    const inFlight = request(`${srv.url}/hold`, { dispatcher: d });
    await waitFor(() => srv.held.length === 1, { message: 'the held request to reach the server' });
    await d.destroy();
    await expect(inFlight).rejects.toThrow();
    expect(src.listenerCount('update')).toBe(0);
    srv.release();
  });

  it('supports callback-style close and destroy', async () => {
    const d = new SpiffeDispatcher(source(clientId, a), authorizeAny());
    await new Promise<void>((resolve) => d.close(resolve));
    await new Promise<void>((resolve) => d.destroy(null, resolve));
  });
});

describe('fetch and request of @spire-csi/sdk/undici', () => {
  it('are the undici the SDK depends on, the one SpiffeDispatcher is built on', () => {
    // Resolved from the SDK's own package, as an installed SDK resolves it: not the application's
    // undici, not Node's bundled one.
    const sdkRequire = createRequire(fileURLToPath(new URL('../../sdk/package.json', import.meta.url)));
    const sdkUndici = sdkRequire('undici') as typeof import('undici');
    expect(fetch).toBe(sdkUndici.fetch);
    expect(request).toBe(sdkUndici.request);
    expect(new SpiffeDispatcher(source(clientId, a), authorizeAny())).toBeInstanceOf(sdkUndici.Dispatcher);
  });

  it('fetch carries a request through SpiffeDispatcher to a real mTLS server', async () => {
    const { url } = await server();
    const res = await fetch(`${url}/`, { dispatcher: dispatcher() });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(`spiffe://a.org/client ${clientId.svid.serialNumber}`);
  });

  it('request carries a request through SpiffeDispatcher to a real mTLS server', async () => {
    const { url } = await server();
    const { statusCode, body } = await request(url, { dispatcher: dispatcher() });
    expect(statusCode).toBe(200);
    expect(await body.text()).toBe(`spiffe://a.org/client ${clientId.svid.serialNumber}`);
  });

  it('fetch refuses a server the authorizer refuses, with the AuthorizationError as the cause', async () => {
    const { url } = await server();
    const failure = await fetch(url, { dispatcher: dispatcher(source(clientId, a), authorizeId('spiffe://a.org/other')) }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((failure as Error).cause).toBeInstanceOf(AuthorizationError);
  });

  it('a bearer interceptor composed onto the dispatcher works through the same fetch', async () => {
    const { url } = await server();
    const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
    const d = dispatcher().compose(bearerTokenInterceptor({ getToken: () => token }, { origins: [new URL(url).origin], audience: 'api' }));
    const res = await fetch(`${url}/authorization`, { dispatcher: d });
    expect(await res.text()).toBe(`Bearer ${token}`);
  });
});
