/**
 * Interoperability with TLS stacks we did not write: OpenSSL's s_client/s_server and curl. The
 * SDK must accept their handshakes when authorized, refuse them otherwise, and its client must
 * work against a plain OpenSSL server that demands a client certificate.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationError, SpiffeDispatcher, authorizeId, createHttpsServer, peerSpiffeId } from '@spire-csi/sdk';
import type { MintedSvid } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { domain, identity, listen, source, type Domain, type Identity } from './tls-harness.js';

function hasBinary(name: string): boolean {
  const found = spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
  if (!found) console.warn(`real-peers: skipping ${name} tests: "${name}" is not installed`);
  return found;
}
const hasOpenssl = hasBinary('openssl');
const hasCurl = hasBinary('curl');

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.delete(child);
}

/** Runs to completion; the kill timer only guards against a hung peer and is not an assertion. */
function run(command: string, args: readonly string[], stdin = ''): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    const guard = setTimeout(() => kill(child), 20_000);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {}); // the peer may exit before reading everything
    child.stdin.end(stdin);
  });
}

let dir: string;
let a: Domain;
let serverId: Identity;
let clientId: Identity;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const child of children) kill(child);
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'spiffe-real-peers-'));
  a = await domain('a.org');
  [serverId, clientId] = await Promise.all([identity(a, '/server'), identity(a, '/client')]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes cert chain and key PEM files; returns their paths. */
async function writeCredentials(name: string, minted: MintedSvid): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await writeFile(cert, minted.chainPem);
  await writeFile(key, minted.keyPem, { mode: 0o600 });
  return { cert, key };
}

async function writeRoot(d: Domain): Promise<string> {
  const path = join(dir, `${d.name}.bundle.pem`);
  await writeFile(path, d.ca.rootPem);
  return path;
}

/** SDK https server that only admits spiffe://a.org/client and echoes the verified ID. */
async function sdkServer() {
  const seen: string[] = [];
  const server = createHttpsServer(source(serverId, a), authorizeId('spiffe://a.org/client'), {}, (req: IncomingMessage, res: ServerResponse) => {
    const id = peerSpiffeId(req)?.toString() ?? 'none';
    seen.push(id);
    res.end(`peer=${id}\n`);
  });
  const listening = await listen(server);
  cleanups.push(listening.close);
  return { port: listening.port, seen };
}

const HTTP_GET = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n';

describe.skipIf(!hasOpenssl)('openssl s_client -> SDK https server', () => {
  it('gets 200 with an authorized client certificate', async () => {
    const { port, seen } = await sdkServer();
    const client = await writeCredentials('client', clientId.minted);
    const root = await writeRoot(a);
    const result = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', client.cert, '-key', client.key, '-CAfile', root, '-verify_return_error', '-quiet'],
      HTTP_GET,
    );
    expect(result.stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(result.stdout).toContain('peer=spiffe://a.org/client');
    expect(seen).toEqual(['spiffe://a.org/client']);
  });

  it('fails without a client certificate', async () => {
    const { port, seen } = await sdkServer();
    const root = await writeRoot(a);
    const result = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', root, '-verify_return_error', '-quiet'],
      HTTP_GET,
    );
    expect(result.stdout).not.toContain('HTTP/1.1 200');
    expect(result.stderr).toMatch(/alert|error/i);
    expect(seen).toEqual([]);
  });
});

describe.skipIf(!hasCurl)('curl -> SDK https server', () => {
  // SVIDs carry no DNS/IP names, so curl's hostname check cannot pass: -k skips verifying the
  // server (not the point here) while curl still presents the client certificate.
  it('gets 200 and the server sees the client SPIFFE ID', async () => {
    const { port, seen } = await sdkServer();
    const client = await writeCredentials('curl-client', clientId.minted);
    const result = await run('curl', ['-sS', '-k', '--cert', client.cert, '--key', client.key, '-w', '\n%{http_code}', `https://127.0.0.1:${port}/`]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('peer=spiffe://a.org/client\n\n200');
    expect(seen).toEqual(['spiffe://a.org/client']);
  });

  it('fails with a certificate the authorizer refuses', async () => {
    const { port, seen } = await sdkServer();
    const other = await writeCredentials('curl-other', (await identity(a, '/other')).minted);
    const result = await run('curl', ['-sS', '-k', '--cert', other.cert, '--key', other.key, `https://127.0.0.1:${port}/`]);
    expect(result.code).not.toBe(0);
    expect(seen).toEqual([]);
  });
});

describe.skipIf(!hasOpenssl)('SDK undici client -> openssl s_server', () => {
  async function freePort(): Promise<number> {
    const probe = createNetServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return port;
  }

  /** s_server requiring a client certificate from a.org (-Verify), answering with a status page. */
  async function sServer(): Promise<{ url: string }> {
    const srv = await writeCredentials('s_server', serverId.minted);
    const root = await writeRoot(a);
    const port = await freePort();
    const child = spawn(
      'openssl',
      ['s_server', '-accept', `127.0.0.1:${port}`, '-Verify', '1', '-verify_return_error', '-CAfile', root, '-cert', srv.cert, '-key', srv.key, '-www'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.add(child);
    cleanups.push(() => kill(child));
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output.includes('ACCEPT') || child.exitCode !== null, { message: 's_server to listen' });
    if (!output.includes('ACCEPT')) throw new Error(`s_server did not start: ${output}`);
    return { url: `https://127.0.0.1:${port}/` };
  }

  it('gets the status page, presenting the SVID that s_server demanded', async () => {
    const { url } = await sServer();
    const dispatcher = new SpiffeDispatcher(source(clientId, a), authorizeId('spiffe://a.org/server'));
    cleanups.push(() => dispatcher.destroy());
    const res = await request(url, { dispatcher });
    expect(res.statusCode).toBe(200);
    const page = await res.body.text();
    expect(page).toContain('Client certificate');
    expect(page).toContain('URI:spiffe://a.org/client');
  });

  it('s_server refuses a client without a certificate', async () => {
    const { url } = await sServer();
    const plain = new Agent({ connect: { ca: [a.ca.rootPem], checkServerIdentity: () => undefined } });
    cleanups.push(() => plain.destroy());
    await expect(request(url, { dispatcher: plain }).then((r) => r.body.text())).rejects.toThrow();
  });

  it('the SDK client refuses s_server when the authorizer does not accept its ID', async () => {
    const { url } = await sServer();
    const dispatcher = new SpiffeDispatcher(source(clientId, a), authorizeId('spiffe://a.org/someone-else'));
    cleanups.push(() => dispatcher.destroy());
    await expect(request(url, { dispatcher })).rejects.toThrow(AuthorizationError);
  });
});
