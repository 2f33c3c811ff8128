/**
 * examples/nginx with a real nginx: the shipped nginx.conf (paths and port rewritten for a temp
 * prefix) serving an SVID from the test CA, the undici-client example (SpiffeDispatcher) calling
 * it, a client of another trust domain refused, and reload-on-rotation.sh picking up a rotation.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import {
  childEnv,
  credentialFolder,
  examplePath,
  freePort,
  hasBinary,
  killChildren,
  requireBuiltSdk,
  runExample,
  serialOf,
  serverSerial,
  start,
  type WrittenFolder,
} from './harness.js';

const hasNginx = hasBinary('nginx', 'examples/nginx tests');
const NGINX_ID = 'spiffe://example.org/nginx';
const MOUNT = '/run/spiffe/credentials/';
const LISTEN = 'listen 8443 ssl;';

let example: TestCa;
let partner: TestCa;
let nginxSvid: MintedSvid;
let clientSvid: MintedSvid;
let clientFolder: WrittenFolder;
let partnerClientFolder: WrittenFolder;

const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  if (!hasNginx) return;
  requireBuiltSdk();
  [example, partner] = await Promise.all([TestCa.create('example.org'), TestCa.create('partner.org')]);
  let partnerClient: MintedSvid;
  [nginxSvid, clientSvid, partnerClient] = await Promise.all([
    example.mint(NGINX_ID),
    example.mint('spiffe://example.org/client'),
    partner.mint('spiffe://partner.org/client'),
  ]);
  clientFolder = await credentialFolder(clientSvid, { ca: example });
  // Trusts example.org through federation, so only nginx's own check can refuse it.
  partnerClientFolder = await credentialFolder(partnerClient, { ca: partner, federated: [example] });
  return async () => {
    await clientFolder.remove();
    await partnerClientFolder.remove();
  };
});

afterEach(async () => {
  killChildren();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Nginx {
  readonly port: number;
  readonly folder: WrittenFolder;
  readonly pidFile: string;
  readonly url: string;
}

/** Stops the whole process group (master and workers), politely first. */
async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  process.kill(-child.pid!, 'SIGTERM');
  await waitFor(() => child.exitCode !== null || child.signalCode !== null, { timeoutMs: 5_000 }).catch(() => {
    process.kill(-child.pid!, 'SIGKILL');
  });
  await exited;
}

async function startNginx(): Promise<Nginx> {
  const prefix = await mkdtemp(join(tmpdir(), 'spire-csi-nginx-'));
  const folder = await credentialFolder(nginxSvid, { ca: example });
  cleanups.push(() => rm(prefix, { recursive: true, force: true }), () => folder.remove());

  const shipped = await readFile(examplePath('nginx/nginx.conf'), 'utf8');
  // The shipped file must keep the strings this test rewrites.
  expect(shipped).toContain(`${MOUNT}svid.pem`);
  expect(shipped).toContain(LISTEN);
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, shipped.replaceAll(MOUNT, `${folder.path}/`).replace(LISTEN, `listen 127.0.0.1:${port} ssl;`));

  const pidFile = join(prefix, 'nginx.pid');
  // A file, not a pipe: the config logs to /dev/stdout, which cannot be opened on a socket pair.
  const outputFile = join(prefix, 'output.log');
  const output = openSync(outputFile, 'a');
  const child = spawn('nginx', ['-p', `${prefix}/`, '-c', conf, '-g', `daemon off; pid ${pidFile}; error_log ${prefix}/error.log info;`], {
    detached: true, // its own process group, so the workers are stopped with it
    stdio: ['ignore', output, output],
  });
  closeSync(output);
  cleanups.push(() => stopGroup(child));

  const started = await waitFor(
    async () => {
      // Returned, not thrown: waitFor treats a throw as "not yet".
      if (child.exitCode !== null) return `exited (${child.exitCode})`;
      return (await serverSerial(port, clientSvid)) === serialOf(nginxSvid) ? 'serving' : undefined;
    },
    { timeoutMs: 15_000, message: 'nginx to serve the SVID' },
  ).catch((err: unknown) => (err as Error).message);
  if (started !== 'serving') {
    const [out, log] = await Promise.all([outputFile, join(prefix, 'error.log')].map((f) => readFile(f, 'utf8').catch(() => '')));
    throw new Error(`nginx did not start: ${started}
output: ${out}
error.log: ${log}`);
  }
  return { port, folder, pidFile, url: `https://127.0.0.1:${port}/` };
}

function client(folder: WrittenFolder, url: string) {
  return runExample('undici-client/client.mjs', childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, TARGET_URL: url, ALLOWED_SPIFFE_ID: NGINX_ID }));
}

describe.skipIf(!hasNginx)('examples/nginx with a real nginx', () => {
  it('serves the SDK client (SpiffeDispatcher) over mTLS with the split files', async () => {
    const nginx = await startNginx();
    const result = await client(clientFolder, nginx.url);
    expect(result.stderr).not.toMatch(/failed/);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^client certificate verified: serial ${serialOf(clientSvid)}, subject "`, 'i'));
  });

  it('refuses a client certificate from another trust domain', async () => {
    const nginx = await startNginx();
    const result = await client(partnerClientFolder, nginx.url);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/HTTP 403: client certificate rejected: FAILED/);
  });

  it('refuses a client without a certificate', async () => {
    const nginx = await startNginx();
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(nginx.url, { rejectUnauthorized: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
    expect(body).toBe('client certificate rejected: NONE\n');
  });

  it('reload-on-rotation.sh reloads nginx when the driver swaps ..data', async () => {
    const nginx = await startNginx();
    const watcher = start('sh', [examplePath('nginx/reload-on-rotation.sh'), nginx.folder.path], childEnv({
      RELOAD_COMMAND: `kill -HUP "$(cat '${nginx.pidFile}')"`,
      POLL_SECONDS: '1',
    }));
    await waitFor(() => watcher.stdout().includes('watching'), { message: 'the script to start' });

    const rotated = await example.mint(NGINX_ID);
    await nginx.folder.write(rotated);
    await waitFor(async () => (await serverSerial(nginx.port, clientSvid)) === serialOf(rotated), {
      timeoutMs: 20_000,
      message: `nginx to serve the rotated SVID; script output: ${watcher.stdout()} ${watcher.stderr()}`,
    });
    expect(watcher.stdout()).toContain('credentials changed');

    const result = await client(clientFolder, nginx.url);
    expect(result.code).toBe(0);
  });
});

describe('examples/nginx/reload-on-rotation.sh', () => {
  it('refuses to start without a folder', async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn('sh', [examplePath('nginx/reload-on-rotation.sh')], { env: childEnv({}) });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/usage: .* FOLDER \(or set SPIFFE_CREDENTIAL_FOLDER\)/);
  });
});
