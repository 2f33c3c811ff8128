/**
 * Shared fixtures for the TLS/undici tests: trust domains, SVIDs and material in one line each,
 * servers on 127.0.0.1 that are always torn down, and client probes that report how a handshake
 * ended instead of throwing.
 */
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { StaticSource, type X509Material } from '@spire-csi/sdk/source';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { TestCa, type MintOptions, type MintedSvid } from '../helpers/test-ca.js';

export interface Domain {
  readonly name: string;
  readonly ca: TestCa;
  readonly bundle: X509Bundle;
}

export async function domain(name: string): Promise<Domain> {
  const ca = await TestCa.create(name);
  return { name, ca, bundle: new X509Bundle(name, [ca.rootCert]) };
}

export interface Identity {
  readonly svid: X509Svid;
  readonly minted: MintedSvid;
}

export async function identity(d: Domain, path: string, options?: MintOptions): Promise<Identity> {
  const minted = await d.ca.mint(`spiffe://${d.name}${path}`, options);
  return { minted, svid: X509Svid.fromDer(minted.chainDer, minted.keyDer) };
}

export function bundleSet(...domains: Domain[]): X509BundleSet {
  return new X509BundleSet(domains.map((d) => d.bundle));
}

export function material(id: Identity, ...trusted: Domain[]): X509Material {
  return { svid: id.svid, bundles: bundleSet(...trusted) };
}

export function source(id: Identity, ...trusted: Domain[]): StaticSource {
  return new StaticSource(material(id, ...trusted));
}

export interface Listening {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:0; close() destroys open connections so it never waits on keep-alive. */
export async function listen(server: NetServer): Promise<Listening> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
}

export interface HttpsResult {
  readonly status: number;
  readonly body: string;
  readonly serverSerial: string | undefined;
}

/** One https GET; rejects when the request fails (handshake refused, connection reset, ...). */
export function httpsGet(port: number, options: https.RequestOptions, path = '/'): Promise<HttpsResult> {
  return new Promise<HttpsResult>((resolve, reject) => {
    const req = https.request({ agent: false, ...options, host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      const serverSerial = (res.socket as tls.TLSSocket).getPeerX509Certificate?.()?.serialNumber;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), serverSerial }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface TlsOutcome {
  /** The client saw its side of the handshake complete. */
  readonly secureConnected: boolean;
  /** Everything the server sent before the connection ended. */
  readonly data: string;
  readonly error: Error | undefined;
  readonly sessionReused: boolean;
  /** The last TLS session ticket received (for resumption tests). */
  readonly session: Buffer | undefined;
}

/**
 * Connects, writes `send` right away (before the server could have decided anything) and
 * collects what comes back until the connection ends. Never rejects.
 */
export function tlsProbe(port: number, options: tls.ConnectionOptions, send = 'ping\n'): Promise<TlsOutcome> {
  return new Promise<TlsOutcome>((resolve) => {
    let secureConnected = false;
    let sessionReused = false;
    let session: Buffer | undefined;
    let error: Error | undefined;
    const chunks: Buffer[] = [];
    const socket = tls.connect({ ...options, host: '127.0.0.1', port });
    socket.on('secureConnect', () => {
      secureConnected = true;
      sessionReused = socket.isSessionReused();
    });
    socket.on('session', (s: Buffer) => {
      session = s;
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => {
      error = err;
    });
    socket.on('close', () =>
      resolve({ secureConnected, data: Buffer.concat(chunks).toString(), error, sessionReused, session }),
    );
    socket.write(send);
  });
}

/** Plain (non-SDK) client credentials, for presenting certificates an X509Svid would refuse. */
export function rawClientOptions(minted: MintedSvid | undefined, serverCa: Domain): tls.ConnectionOptions {
  return {
    ...(minted ? { cert: minted.chainPem, key: minted.keyPem } : {}),
    ca: [serverCa.ca.rootPem],
    // The server side is under test here, not the client's view of the server.
    checkServerIdentity: () => undefined,
  };
}
