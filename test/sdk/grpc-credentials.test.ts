/**
 * @spire-csi/sdk/grpc between a real grpc-js client and server over a unix socket with real mTLS:
 * the handshake and a call, rotation on both sides while a stream keeps flowing, refusals on either
 * side, and the cross-trust-domain forgery that OpenSSL's union of bundles would let through.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  status,
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type ServiceError,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { peerSpiffeId, spiffeChannelCredentials, spiffeServerCredentials, SpiffeGrpcError } from '@spire-csi/sdk/grpc';
import { authorizeAny, authorizeId, authorizeMemberOf, type Authorizer } from '@spire-csi/sdk/authorize';
import { StaticSource } from '@spire-csi/sdk/source';
import { X509Svid } from '@spire-csi/sdk/x509';
import { TestCa } from '../helpers/test-ca.js';
import { domain, identity, material, source, type Domain, type Identity } from './tls-harness.js';

const SERVER_ID = '/broker';
const CLIENT_ID = '/driver';

interface Hello {
  readonly peer: string | null;
  readonly peerSerial: string | null;
}

const json = {
  serialize: (value: unknown): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): unknown => JSON.parse(bytes.toString()),
};

/** A tiny service: Hello (unary) answers who the caller is; Watch (server stream) sends what the test pushes. */
const SERVICE: ServiceDefinition = {
  Hello: {
    path: '/test.Peers/Hello',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
  Watch: {
    path: '/test.Peers/Watch',
    requestStream: false,
    responseStream: true,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};
const PeersClient = makeGenericClientConstructor(SERVICE, 'Peers');

interface PeersServer {
  readonly target: string;
  /** Calls that reached a handler. */
  readonly handled: string[];
  readonly watchers: Set<ServerWritableStream<unknown, unknown>>;
}

let A: Domain;
let B: Domain;
let serverA: Identity;
let clientA: Identity;

beforeAll(async () => {
  A = await domain('example.org');
  B = await domain('other.org');
  serverA = await identity(A, SERVER_ID);
  clientA = await identity(A, CLIENT_ID);
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(creds: ServerCredentials): Promise<PeersServer> {
  const dir = mkdtempSync(join(tmpdir(), 'spire-csi-grpc-'));
  const target = `unix://${join(dir, 'broker.sock')}`;
  const handled: string[] = [];
  const watchers = new Set<ServerWritableStream<unknown, unknown>>();
  const server = new Server();
  server.addService(SERVICE, {
    Hello(call: ServerUnaryCall<unknown, Hello>, callback: sendUnaryData<Hello>) {
      handled.push('Hello');
      callback(null, { peer: peerSpiffeId(call)?.toString() ?? null, peerSerial: call.getAuthContext().sslPeerCertificate?.serialNumber ?? null });
    },
    Watch(call: ServerWritableStream<unknown, unknown>) {
      handled.push('Watch');
      watchers.add(call);
      call.on('cancelled', () => watchers.delete(call));
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(target, creds, (err) => (err ? reject(err) : resolve())));
  cleanups.push(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });
  return { target, handled, watchers };
}

function connect(target: string, creds: ChannelCredentials): Client {
  // A pool of its own: each client here is meant to be a separate connection.
  const client = new PeersClient(target, creds, { 'grpc.use_local_subchannel_pool': 1 });
  cleanups.push(() => client.close());
  return client;
}

interface HelloOutcome {
  readonly reply?: Hello;
  readonly error?: ServiceError;
  /** The server this call talked to, as the client verified it. */
  readonly server?: string;
  readonly serverSerial?: string;
}

function hello(client: Client): Promise<HelloOutcome> {
  return new Promise((resolve) => {
    const call = client.makeUnaryRequest('/test.Peers/Hello', json.serialize, json.deserialize as (b: Buffer) => Hello, {}, (error, reply) => {
      const auth = call.getAuthContext();
      resolve({
        ...(error ? { error } : { reply: reply! }),
        ...(auth?.sslPeerCertificate ? { serverSerial: auth.sslPeerCertificate.serialNumber } : {}),
        ...(peerSpiffeId(call) ? { server: peerSpiffeId(call)!.toString() } : {}),
      });
    });
  });
}

function creds(src: StaticSource, authorize: Authorizer): { client: ChannelCredentials; server: ServerCredentials } {
  return { client: spiffeChannelCredentials(src, { authorize }), server: spiffeServerCredentials(src, { authorize }) };
}

describe('@spire-csi/sdk/grpc credentials', () => {
  it('handshake and call: each side sees the other verified by SPIFFE ID', async () => {
    const server = await serve(spiffeServerCredentials(source(serverA, A), { authorize: authorizeId(`spiffe://example.org${CLIENT_ID}`) }));
    const client = connect(server.target, spiffeChannelCredentials(source(clientA, A), { authorize: authorizeId(`spiffe://example.org${SERVER_ID}`) }));

    const outcome = await hello(client);
    expect(outcome.error).toBeUndefined();
    expect(outcome.reply).toEqual({ peer: `spiffe://example.org${CLIENT_ID}`, peerSerial: clientA.svid.serialNumber });
    expect(outcome.server).toBe(`spiffe://example.org${SERVER_ID}`);
    expect(outcome.serverSerial).toBe(serverA.svid.serialNumber);
    expect(server.handled).toEqual(['Hello']);
  });

  it('rotation on both sides: the open stream keeps flowing, a new connection uses the new SVIDs', async () => {
    const serverSource = source(serverA, A);
    const clientSource = source(clientA, A);
    const server = await serve(spiffeServerCredentials(serverSource, { authorize: authorizeMemberOf('example.org') }));
    const clientCreds = spiffeChannelCredentials(clientSource, { authorize: authorizeId(`spiffe://example.org${SERVER_ID}`) });
    const old = connect(server.target, clientCreds);

    const stream: ClientReadableStream<unknown> = old.makeServerStreamRequest('/test.Peers/Watch', json.serialize, json.deserialize, {});
    const received: unknown[] = [];
    let wake: (() => void) | undefined;
    stream.on('data', (message) => {
      received.push(message);
      wake?.();
    });
    stream.on('error', () => {});
    const nextMessage = (): Promise<void> => new Promise((resolve) => (wake = resolve));
    while (server.watchers.size === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    let arrived = nextMessage();
    for (const w of server.watchers) w.write({ n: 1 });
    await arrived;

    const serverNext = await identity(A, SERVER_ID);
    const clientNext = await identity(A, CLIENT_ID);
    serverSource.set(material(serverNext, A));
    clientSource.set(material(clientNext, A));

    // The stream opened before the rotation keeps flowing on its connection.
    arrived = nextMessage();
    for (const w of server.watchers) w.write({ n: 2 });
    await arrived;
    expect(received).toEqual([{ n: 1 }, { n: 2 }]);

    // A new connection: both sides present their new SVIDs.
    const fresh = await hello(connect(server.target, clientCreds));
    expect(fresh.error).toBeUndefined();
    expect(fresh.serverSerial).toBe(serverNext.svid.serialNumber);
    expect(fresh.reply).toEqual({ peer: `spiffe://example.org${CLIENT_ID}`, peerSerial: clientNext.svid.serialNumber });

    // The old connection still carries calls (its SVIDs were verified when it was made and still are valid).
    const onOld = await hello(old);
    expect(onOld.error).toBeUndefined();
    expect(onOld.reply?.peerSerial).toBe(clientA.svid.serialNumber);
    expect(onOld.serverSerial).toBe(serverA.svid.serialNumber);
    stream.cancel();
  });

  it('the client refuses a server with the wrong SPIFFE ID: the call fails before it is sent', async () => {
    const server = await serve(spiffeServerCredentials(source(serverA, A), { authorize: authorizeAny() }));
    const client = connect(server.target, spiffeChannelCredentials(source(clientA, A), { authorize: authorizeId('spiffe://example.org/the-real-broker') }));

    const outcome = await hello(client);
    expect(outcome.error?.code).toBe(status.UNAVAILABLE);
    expect(outcome.error?.details).toContain('authorize: peer spiffe://example.org/broker is not spiffe://example.org/the-real-broker');
    expect(server.handled).toEqual([]);
  });

  it('the server refuses a client its Authorizer does not allow: PERMISSION_DENIED before any handler runs', async () => {
    const server = await serve(spiffeServerCredentials(source(serverA, A), { authorize: authorizeId('spiffe://example.org/someone-else') }));
    const client = connect(server.target, spiffeChannelCredentials(source(clientA, A), { authorize: authorizeAny() }));

    const outcome = await hello(client);
    expect(outcome.error?.code).toBe(status.PERMISSION_DENIED);
    expect(outcome.error?.details).toBe('spiffe: client not authorized: authorize: peer spiffe://example.org/driver is not spiffe://example.org/someone-else');
    expect(server.handled).toEqual([]);
  });

  it('the server refuses, at the handshake, a client whose chain ends in none of its bundles', async () => {
    const stranger = await identity(B, CLIENT_ID);
    const server = await serve(spiffeServerCredentials(source(serverA, A), { authorize: authorizeAny() }));
    // The client trusts the server; the server does not know trust domain B at all.
    const client = connect(server.target, spiffeChannelCredentials(source(stranger, A, B), { authorize: authorizeAny() }));

    const outcome = await hello(client);
    expect(outcome.error?.code).toBe(status.UNAVAILABLE);
    // Node's TLS server closes such a connection without a word; grpc-js reports the failed connection.
    expect(outcome.error?.details).toMatch(/^No connection established\. Last error: /);
    expect(server.handled).toEqual([]);
  });

  describe('cross-trust-domain forgery: trust domain B\'s CA issues an ID of trust domain A, both bundles loaded', () => {
    let forgedClient: Identity;
    let forgedServer: Identity;

    beforeAll(async () => {
      const forge = async (path: string): Promise<Identity> => {
        const minted = await B.ca.mint(`spiffe://example.org${path}`);
        return { minted, svid: X509Svid.fromDer(minted.chainDer, minted.keyDer) };
      };
      forgedClient = await forge(CLIENT_ID);
      forgedServer = await forge(SERVER_ID);
    });

    it('OpenSSL\'s union of bundles would accept the forged server (so the check below is what stops it)', async () => {
      const forged = source(forgedServer, A, B);
      const server = await serve(spiffeServerCredentials(forged, { authorize: authorizeAny() }));
      const union = Buffer.from(A.ca.rootPem + B.ca.rootPem);
      const plain = credentials.createSsl(union, Buffer.from(clientA.minted.keyPem), Buffer.from(clientA.minted.chainPem), {
        checkServerIdentity: () => undefined,
      });
      const outcome = await hello(connect(server.target, plain));
      // The connection was made (the union accepted the server); only the server's own check refused the call.
      expect(outcome.serverSerial).toBe(forgedServer.svid.serialNumber);
    });

    it('the client refuses the forged server', async () => {
      const server = await serve(spiffeServerCredentials(source(forgedServer, A, B), { authorize: authorizeAny() }));
      const client = connect(server.target, spiffeChannelCredentials(source(clientA, A, B), { authorize: authorizeMemberOf('example.org') }));

      const outcome = await hello(client);
      expect(outcome.error?.code).toBe(status.UNAVAILABLE);
      expect(outcome.error?.details).toMatch(/not signed by an authority of trust domain "example.org"/);
      expect(server.handled).toEqual([]);
    });

    it('the server refuses the forged client: UNAUTHENTICATED before any handler runs', async () => {
      const server = await serve(spiffeServerCredentials(source(serverA, A, B), { authorize: authorizeAny() }));
      const client = connect(server.target, spiffeChannelCredentials(source(forgedClient, A, B), { authorize: authorizeAny() }));

      const outcome = await hello(client);
      expect(outcome.error?.code).toBe(status.UNAUTHENTICATED);
      expect(outcome.error?.details).toMatch(/^spiffe: client refused: x509svid: .*not signed by an authority of trust domain "example.org"/);
      expect(server.handled).toEqual([]);
    });
  });

  it('a client SVID signed by an intermediate verifies when the server holds that intermediate, and is refused otherwise', async () => {
    const signing = await A.ca.intermediate();
    const viaIntermediate = async (path: string): Promise<Identity> => {
      const minted = await signing.mint(`spiffe://example.org${path}`);
      return { minted, svid: X509Svid.fromDer(minted.chainDer, minted.keyDer) };
    };
    const client = await viaIntermediate(CLIENT_ID);
    const sameCa = await serve(spiffeServerCredentials(source(await viaIntermediate(SERVER_ID), A), { authorize: authorizeAny() }));
    const ok = await hello(connect(sameCa.target, spiffeChannelCredentials(source(client, A), { authorize: authorizeAny() })));
    expect(ok.error).toBeUndefined();
    expect(ok.reply?.peer).toBe(`spiffe://example.org${CLIENT_ID}`);

    const otherCa = await serve(spiffeServerCredentials(source(serverA, A), { authorize: authorizeAny() }));
    const refused = await hello(connect(otherCa.target, spiffeChannelCredentials(source(client, A), { authorize: authorizeAny() })));
    expect(refused.error?.code).toBe(status.UNAUTHENTICATED);
    expect(otherCa.handled).toEqual([]);
  });

  it('peerSpiffeId answers only for peers these credentials verified', async () => {
    const plainServer = new Server();
    const dir = mkdtempSync(join(tmpdir(), 'spire-csi-grpc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const unverified = await TestCa.create('example.org');
    const claim = await unverified.mint(`spiffe://example.org${CLIENT_ID}`);
    const seen: (string | undefined)[] = [];
    plainServer.addService(SERVICE, {
      Hello(call: ServerUnaryCall<unknown, Hello>, callback: sendUnaryData<Hello>) {
        seen.push(peerSpiffeId(call)?.toString());
        callback(null, { peer: null, peerSerial: null });
      },
      Watch() {},
    });
    const target = `unix://${join(dir, 'plain.sock')}`;
    const plainCreds = ServerCredentials.createSsl(Buffer.from(unverified.rootPem), [{ private_key: Buffer.from(serverA.minted.keyPem), cert_chain: Buffer.from(serverA.minted.chainPem) }], true);
    await new Promise<void>((resolve, reject) => plainServer.bindAsync(target, plainCreds, (err) => (err ? reject(err) : resolve())));
    cleanups.push(() => plainServer.forceShutdown());
    const claimer = { minted: claim, svid: X509Svid.fromDer(claim.chainDer, claim.keyDer) };
    const outcome = await hello(connect(target, spiffeChannelCredentials(source(claimer, A), { authorize: authorizeAny() })));
    expect(outcome.error).toBeUndefined();
    // The plain server's TLS accepted the client, but nothing verified it as a SPIFFE peer.
    expect(seen).toEqual([undefined]);
  });

  it('refuses to build credentials without an Authorizer', () => {
    const src = source(clientA, A);
    for (const build of [spiffeChannelCredentials, spiffeServerCredentials] as const) {
      expect(() => build(src, {} as { authorize: Authorizer })).toThrow(SpiffeGrpcError);
      expect(() => build(src, {} as { authorize: Authorizer })).toThrow(/the `authorize` option is required/);
    }
    expect(creds(src, authorizeAny()).client).toBeDefined();
  });
});
