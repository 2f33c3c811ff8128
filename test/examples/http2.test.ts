/**
 * examples/http2-server spoken to over real HTTP/2 (node:http2 connect) by a client built from
 * the SDK's createClientTlsOptions, the way a Node HTTP/2 caller would do it.
 */
import * as http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TrustDomain, authorizeId, type Authorizer } from '@spire-csi/sdk';
import { StaticSource } from '@spire-csi/sdk/source';
import { createClientTlsOptions } from '@spire-csi/sdk/tls';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { childEnv, credentialFolder, killChildren, requireBuiltSdk, serialOf, startServer, type WrittenFolder } from './harness.js';

const SERVER_ID = 'spiffe://example.org/server';

let example: TestCa;
let serverSvid: MintedSvid;
let clientSource: StaticSource;
const folders: WrittenFolder[] = [];

beforeAll(async () => {
  requireBuiltSdk();
  example = await TestCa.create('example.org');
  serverSvid = await example.mint(SERVER_ID);
  const client = await example.mint('spiffe://example.org/client');
  clientSource = new StaticSource({
    svid: X509Svid.fromDer(client.chainDer, client.keyDer),
    bundles: new X509BundleSet([new X509Bundle(TrustDomain.parse('example.org'), [example.rootCert])]),
  });
});

afterEach(async () => {
  killChildren();
  for (const folder of folders.splice(0)) await folder.remove();
});

async function server(extra: Record<string, string> = {}) {
  const folder = await credentialFolder(serverSvid, { ca: example });
  folders.push(folder);
  const srv = await startServer('http2-server/server.mjs', childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, PORT: '0', ...extra }));
  return { ...srv, folder };
}

interface Http2Answer {
  status: number;
  body: string;
  alpn: string | false | undefined;
  serverSerial: string;
}

/** One GET / on a fresh HTTP/2 session with SPIFFE client TLS options. */
function get(port: number, authorizer: Authorizer): Promise<Http2Answer> {
  return new Promise<Http2Answer>((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, createClientTlsOptions(clientSource, authorizer));
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      session.destroy();
      reject(err);
    };
    session.once('error', fail);
    const stream = session.request({ ':path': '/' });
    stream.once('error', fail);
    let status = 0;
    let body = '';
    stream.once('response', (headers) => (status = Number(headers[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (body += chunk));
    stream.once('end', () => {
      const socket = session.socket as TLSSocket | undefined;
      // A refused session can end the stream after its socket is already gone.
      if (socket === undefined || status === 0) {
        fail(new Error('the session ended without a response'));
        return;
      }
      const answer = { status, body, alpn: session.alpnProtocol, serverSerial: socket.getPeerCertificate().serialNumber.toUpperCase() };
      settled = true;
      session.close();
      resolve(answer);
    });
    // A session the server tears down before answering ends the stream without 'end'.
    stream.once('close', () => fail(new Error(`stream closed without a response (rstCode ${stream.rstCode})`)));
  });
}

describe('examples/http2-server with a node:http2 client', () => {
  it('answers over h2 with the caller\'s SPIFFE ID', async () => {
    const srv = await server();
    const answer = await get(srv.port, authorizeId(SERVER_ID));
    expect(answer).toEqual({ status: 200, body: 'spiffe://example.org/client\n', alpn: 'h2', serverSerial: serialOf(serverSvid) });
  });

  it('refuses a client that is not ALLOWED_SPIFFE_ID', async () => {
    const srv = await server({ ALLOWED_SPIFFE_ID: 'spiffe://example.org/someone-else' });
    await expect(get(srv.port, authorizeId(SERVER_ID))).rejects.toThrow();
    await waitFor(() => srv.stderr().includes('refused a client: authorize: peer spiffe://example.org/client'), {
      message: 'the server to log the refusal',
    });
  });

  it('is refused by a client expecting another server ID', async () => {
    const srv = await server();
    await expect(get(srv.port, authorizeId('spiffe://example.org/other'))).rejects.toThrow(
      /authorize: peer spiffe:\/\/example\.org\/server is not spiffe:\/\/example\.org\/other/,
    );
  });

  it('serves a rotated SVID to new sessions without restarting', async () => {
    const srv = await server();
    expect((await get(srv.port, authorizeId(SERVER_ID))).serverSerial).toBe(serialOf(serverSvid));
    const rotated = await example.mint(SERVER_ID);
    await srv.folder.write(rotated);
    const answer = await waitFor(
      async () => {
        const a = await get(srv.port, authorizeId(SERVER_ID));
        return a.serverSerial === serialOf(rotated) ? a : undefined;
      },
      { message: 'a session with the rotated server SVID' },
    );
    expect(answer).toMatchObject({ status: 200, body: 'spiffe://example.org/client\n', alpn: 'h2' });
    expect(srv.child.exitCode).toBeNull();
  });
});
