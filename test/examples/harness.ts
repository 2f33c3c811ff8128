/**
 * Runs the examples the way a user would: `node examples/<x>/<y>.mjs` as real child processes
 * importing the built @spire-csi/sdk, each with a credential folder written like the driver does.
 * Every child is tracked so a failing test never leaks a server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { CredentialFolder, credentialFiles } from '../helpers/credential-folder.js';
import type { MintedSvid, TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export function examplePath(relative: string): string {
  return join(REPO, 'examples', relative);
}

/** The examples import '@spire-csi/sdk', which resolves through the workspace link to sdk/dist. */
export function requireBuiltSdk(): void {
  if (!existsSync(join(REPO, 'sdk', 'dist', 'index.js'))) {
    throw new Error('examples: sdk/dist/index.js is missing; run npm run build first (the examples import the built SDK)');
  }
}

export function hasBinary(name: string, what: string): boolean {
  const found = spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
  if (!found) console.warn(`${what}: skipping: "${name}" is not installed`);
  return found;
}

/** A minimal environment, so nothing from the test runner's (ALLOWED_*, NODE_OPTIONS...) leaks in. */
export function childEnv(vars: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const [key, value] of Object.entries(vars)) if (value !== undefined) env[key] = value;
  return env;
}

const children = new Set<ChildProcess>();

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.delete(child);
}

/** For afterEach. */
export function killChildren(): void {
  for (const child of [...children]) kill(child);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs to completion. The guard only keeps a hung child from hanging the suite (the test then
 * fails on the missing exit code); it is not a timing assertion.
 */
export function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, guardMs = 30_000): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(command, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const guard = setTimeout(() => kill(child), guardMs);
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
  });
}

export function runExample(relative: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return run(process.execPath, [examplePath(relative)], env);
}

/** A long-running child whose output is readable while it runs. */
export interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  exited(): Promise<number | string | null>;
}

export interface StartOptions {
  /** Not stopped by killChildren(): the caller stops it (a server shared by several tests). */
  shared?: boolean;
}

export function start(command: string, args: readonly string[], env: NodeJS.ProcessEnv, options: StartOptions = {}): Running {
  const child = spawn(command, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (!options.shared) children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | string | null>((resolve) => {
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal);
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited: () => exit };
}

export interface RunningServer extends Running {
  readonly port: number;
  readonly url: string;
}

/** Starts a server example and waits for its `listening <port>` line. */
export async function startServer(relative: string, env: NodeJS.ProcessEnv, options: StartOptions = {}): Promise<RunningServer> {
  const running = start(process.execPath, [examplePath(relative)], env, options);
  const EXITED = Symbol('exited');
  let exitedWith: number | string | null | undefined;
  void running.exited().then((code) => (exitedWith = code));
  const port = await waitFor(
    () => {
      const match = /^listening (\d+)$/m.exec(running.stdout());
      if (match) return Number(match[1]);
      // Returned, not thrown: waitFor would treat a throw as "not yet" and keep polling.
      return exitedWith === undefined ? undefined : EXITED;
    },
    { timeoutMs: 20_000, message: `${relative} to print "listening <port>"` },
  ).catch((err: unknown) => {
    kill(running.child);
    throw new Error(`${(err as Error).message}\nstderr: ${running.stderr()}`, { cause: err });
  });
  if (port === EXITED) throw new Error(`${relative} exited (${String(exitedWith)}) before listening; stderr: ${running.stderr()}`);
  return { ...running, port, url: `https://127.0.0.1:${port}/` };
}

export interface CredentialsSpec {
  /** Own trust domain CA. */
  readonly ca: TestCa;
  /** Federated CAs whose bundles are written too. */
  readonly federated?: readonly TestCa[];
}

export interface WrittenFolder {
  readonly folder: CredentialFolder;
  readonly path: string;
  /** Writes a new generation (atomic `..data` swap) for this SVID. */
  write(minted: MintedSvid): Promise<void>;
  remove(): Promise<void>;
}

/** A driver-style credential folder holding `minted`. */
export async function credentialFolder(minted: MintedSvid, spec: CredentialsSpec): Promise<WrittenFolder> {
  const { folder, root } = await CredentialFolder.create('atomic');
  const federated = Object.fromEntries((spec.federated ?? []).map((ca) => [ca.trustDomain, ca.rootPem]));
  const write = (svid: MintedSvid): Promise<void> =>
    folder.write(credentialFiles(svid, { trustDomain: spec.ca.trustDomain, bundlePem: spec.ca.rootPem, federated }));
  await write(minted);
  return { folder, path: folder.path, write, remove: () => rm(root, { recursive: true, force: true }) };
}

/**
 * The serial number of the certificate the server at `port` presents now. A raw handshake with
 * `client`'s credentials; the server's identity is not checked here, only observed.
 */
export function serverSerial(port: number, client: MintedSvid, servername?: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      cert: client.chainPem,
      key: client.keyPem,
      rejectUnauthorized: false,
    });
    socket.once('secureConnect', () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.destroy();
      resolve(serial.toUpperCase());
    });
    socket.once('error', reject);
  });
}

export function serialOf(minted: MintedSvid): string {
  return minted.cert.serialNumber.toUpperCase();
}

/** A TCP port that was free a moment ago, for programs that cannot be told to pick one. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
