import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DriverConfig } from '../../driver/src/config/driver-config.js';
import { DevAgent } from '../../dev/src/dev-agent/server.js';
import type { Registrations } from '../../dev/src/dev-agent/registrations.js';
import { createLogger } from '../../driver/src/logging.js';
import { startDriver, type DriverDependencies, type RunningDriver } from '../../driver/src/main.js';
import { parseMountInfo } from '../../driver/src/mount/mountinfo.js';
import { KubeletEmulator } from './kubelet-emulator.js';
import { waitFor } from './wait-for.js';

const run = promisify(execFile);
export const CLI_PATH = fileURLToPath(new URL('../../driver/dist/cli.js', import.meta.url));

export interface HarnessOptions {
  readonly trustDomain?: string;
  readonly registrations: Registrations;
  readonly svidTtlMs?: number;
  readonly publishTimeoutMs?: number;
}

/**
 * One node's worth of real parts in a temp folder: a dev agent on its admin socket, the driver
 * (in-process or as a child process), kubelet's folder layout and a CSI client acting as kubelet.
 * `cleanup()` unmounts everything under the folder, even after a failed test.
 */
export class DriverHarness {
  readonly root: string;
  readonly kubeletRoot: string;
  readonly stateDir: string;
  readonly csiSocket: string;
  readonly adminSocket: string;
  readonly agent: DevAgent;
  readonly logLines: string[] = [];
  private kubeletClient: KubeletEmulator | undefined;
  private driver: RunningDriver | undefined;
  private child: ChildProcess | undefined;

  private constructor(root: string, private readonly options: HarnessOptions) {
    this.root = root;
    this.kubeletRoot = join(root, 'kubelet');
    this.stateDir = join(root, 'state');
    this.csiSocket = join(root, 'plugin', 'csi.sock');
    this.adminSocket = join(root, 'agent', 'admin.sock');
    this.agent = new DevAgent({
      socketPath: this.adminSocket,
      trustDomain: options.trustDomain ?? 'example.org',
      registrations: options.registrations,
      svidTtlMs: options.svidTtlMs ?? 3_600_000,
    });
  }

  static async create(options: HarnessOptions): Promise<DriverHarness> {
    const root = await mkdtemp(join(tmpdir(), 'spire-csi-e2e-'));
    const harness = new DriverHarness(root, options);
    await mkdir(join(harness.kubeletRoot, 'pods'), { recursive: true });
    await mkdir(join(root, 'agent'), { recursive: true });
    await harness.agent.start();
    return harness;
  }

  get config(): DriverConfig {
    return {
      csiSocketPath: this.csiSocket,
      nodeId: 'node-1',
      adminSocketPath: this.adminSocket,
      kubeletRoot: this.kubeletRoot,
      stateDir: this.stateDir,
      pluginName: 'csi.spire.io',
      publishTimeoutMs: this.options.publishTimeoutMs ?? 10_000,
      logLevel: 'debug',
      metricsAddress: null,
    };
  }

  get kubelet(): KubeletEmulator {
    this.kubeletClient ??= new KubeletEmulator(this.kubeletRoot, this.csiSocket);
    return this.kubeletClient;
  }

  /** The driver in this process, logging JSON lines into `logLines`; `deps` replaces its parts (a probe, a mounter). */
  async startDriver(deps: Omit<DriverDependencies, 'logger'> = {}): Promise<RunningDriver> {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
        done();
      },
    });
    this.driver = await startDriver(this.config, { ...deps, logger: createLogger('debug', sink) });
    return this.driver;
  }

  async stopDriver(): Promise<void> {
    await this.driver?.stop();
    this.driver = undefined;
    this.resetKubelet();
  }

  /** The built command line, as a DaemonSet would start it; needs `npm run build`. */
  async spawnDriver(): Promise<ChildProcess> {
    if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run \`npm run build\` first`);
    const c = this.config;
    const child = spawn(
      process.execPath,
      [
        CLI_PATH,
        '--csi-endpoint', `unix://${c.csiSocketPath}`,
        '--node-id', c.nodeId,
        '--admin-socket', c.adminSocketPath,
        '--kubelet-root', c.kubeletRoot,
        '--state-dir', c.stateDir,
        '--publish-timeout', `${c.publishTimeoutMs}ms`,
        '--log-level', 'debug',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (chunk: Buffer) => this.logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    child.stderr?.on('data', (chunk: Buffer) => this.logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    this.child = child;
    // Only this process's lines count: a previous run's "serving" line must not end the wait early.
    const firstLine = this.logLines.length;
    await waitFor(() => this.logLines.slice(firstLine).some((line) => line.includes('spire-csi driver serving')) || child.exitCode !== null, {
      timeoutMs: 20_000,
      message: 'the driver process to serve its CSI socket',
    });
    if (child.exitCode !== null) throw new Error(`driver exited with ${child.exitCode}:\n${this.logLines.join('\n')}`);
    this.resetKubelet();
    return child;
  }

  async killDriver(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const code = await exited;
    this.child = undefined;
    this.resetKubelet();
    return code;
  }

  private resetKubelet(): void {
    this.kubeletClient?.close();
    this.kubeletClient = undefined;
  }

  async cleanup(): Promise<void> {
    this.resetKubelet();
    await this.stopDriver().catch(() => undefined);
    await this.killDriver().catch(() => undefined);
    await this.agent.stop().catch(() => undefined);
    await unmountUnder(this.root);
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Every mount point at or below `root`, deepest first. */
export async function mountsUnder(root: string): Promise<string[]> {
  const points = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'))
    .map((entry) => entry.mountPoint)
    .filter((point) => point === root || point.startsWith(`${root}/`));
  return points.sort((a, b) => b.length - a.length);
}

export async function unmountUnder(root: string): Promise<void> {
  for (const point of await mountsUnder(root)) {
    await run('umount', ['-l', point]).catch(() => undefined);
  }
}

export const isRoot = process.getuid?.() === 0;
