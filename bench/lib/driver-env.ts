/**
 * The real parts for driver benches: the test DriverHarness (dev agent, kubelet layout, cleanup of
 * every mount under its folder), a driver spawned the way a DaemonSet starts it but at info level
 * (debug logging would be measured otherwise), and bulk publish/unpublish through the kubelet
 * emulator. Cleanup also runs on SIGTERM/SIGINT, so a bench stopped by the runner leaves no mounts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RegistrationEntry } from '../../dev/src/dev-agent/registrations.js';
import { DriverHarness } from '../../test/helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod, type PublishedVolume } from '../../test/helpers/kubelet-emulator.js';
import { waitFor } from '../../test/helpers/wait-for.js';
import { onAbort } from './abort.js';
import { mapLimit } from './report.js';

export { onAbort };

export const WEB_ID = 'spiffe://example.org/ns/default/sa/web';

/** One entry matching every pod of the namespace: every volume shares one SVID and key (the flattering case). */
export const MATCH_ALL: RegistrationEntry = {
  spiffeId: WEB_ID,
  selectors: [{ type: 'k8s', value: 'ns:default' }],
  federatesWith: [],
  hint: '',
};

/**
 * How the benches register workloads. `per-pod` (the default, what real clusters run): one entry
 * per pod on `k8s:ns` + `k8s:pod-uid`, as spire-controller-manager registers them, so every volume
 * gets its own SPIFFE ID, SVID and key. `shared`: MATCH_ALL, one SVID for every volume.
 */
export type Registration = 'per-pod' | 'shared';

export const REGISTRATION: Registration = process.env.BENCH_REGISTRATION === 'shared' ? 'shared' : 'per-pod';

/** The entry spire-controller-manager would write for a pod. */
export function podEntry(pod: EmulatedPod): RegistrationEntry {
  return {
    spiffeId: `spiffe://example.org/ns/${pod.namespace}/pod/${pod.uid}`,
    selectors: [
      { type: 'k8s', value: `ns:${pod.namespace}` },
      { type: 'k8s', value: `pod-uid:${pod.uid}` },
    ],
    federatesWith: [],
    hint: '',
  };
}

export async function createHarness(registration: Registration = REGISTRATION): Promise<DriverHarness> {
  const h = await DriverHarness.create({
    registrations: { entries: registration === 'shared' ? [MATCH_ALL] : [], federatedTrustDomains: [] },
    publishTimeoutMs: 30_000,
  });
  if (registration === 'per-pod') perPodEntries.set(h, []);
  onAbort(() => h.cleanup());
  return h;
}

/** The entries registered so far, for harnesses with per-pod registration only. */
const perPodEntries = new WeakMap<DriverHarness, RegistrationEntry[]>();

/** With per-pod registration, adds the pods' entries to the agent (kept out of timed sections). */
export async function registerPods(h: DriverHarness, pods: readonly EmulatedPod[]): Promise<void> {
  const entries = perPodEntries.get(h);
  if (entries === undefined) return;
  entries.push(...pods.map(podEntry));
  await h.agent.setRegistrations([...entries]);
}

export interface SpawnedDriver {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Log lines seen so far (info level). */
  readonly lines: string[];
  /** Reads VmRSS / VmHWM of the process, in bytes. */
  rss(): Promise<{ rss: number; hwm: number }>;
  /** CPU time (user + system) the process has used so far, in ms (from /proc/<pid>/stat). */
  cpuMs(): Promise<number>;
  /** The driver's own heap after GC, through the preloaded heap probe. */
  heap(): Promise<NodeJS.MemoryUsage>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Set by bench/run.mjs, which bundles driver/src/cli.ts; BENCH_DRIVER_CLI=driver/dist/cli.js runs the built package. */
const CLI_PATH = process.env.BENCH_DRIVER_CLI ?? join(process.cwd(), 'node_modules', '.cache', 'spire-csi-bench', 'driver-cli.mjs');
const HEAP_PROBE = process.env.BENCH_HEAP_PROBE ?? join(process.cwd(), 'bench', 'heap-probe.mjs');

/**
 * The driver CLI in its own process, with the heap probe preloaded (which also writes CPU profiles
 * when BENCH_CPU_PROF names a folder; the variable reaches the driver through its environment).
 */
export async function spawnDriver(h: DriverHarness): Promise<SpawnedDriver> {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run the bench through \`npm run bench\``);
  const heapFile = join(h.root, `heap-${Date.now()}.json`);
  const c = h.config;
  // The image's node flags (deploy/Dockerfile ENTRYPOINT), so the bench runs what users run;
  // BENCH_DRIVER_NODE_ARGS replaces them, to try a flag before making it the image's default.
  const extraArgs = (process.env.BENCH_DRIVER_NODE_ARGS ?? (await imageNodeFlags()).join(' ')).split(' ').filter((a) => a !== '');
  const nodeArgs = ['--expose-gc', ...extraArgs, '--import', HEAP_PROBE];
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      CLI_PATH,
      '--csi-endpoint', `unix://${c.csiSocketPath}`,
      '--node-id', c.nodeId,
      '--admin-socket', c.adminSocketPath,
      '--kubelet-root', c.kubeletRoot,
      '--state-dir', c.stateDir,
      '--publish-timeout', `${c.publishTimeoutMs}ms`,
      '--log-level', 'info',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BENCH_HEAP_FILE: heapFile } },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('bench: the driver did not start');
  // The runner kills what is listed here if this process dies without cleaning up.
  await writeFile(join(h.root, `driver-${pid}.pid`), String(pid));
  const lines: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer): void => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    // Only what the benches look for is kept, so 1,000 volumes of logs do not fill this process.
    for (const line of parts) if (line.includes('serving') || line.includes('resumed') || line.includes('"level":50')) lines.push(line);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const stopKill = onAbort(async () => void child.kill('SIGKILL'));
  child.once('exit', () => stopKill());
  await waitFor(() => lines.some((l) => l.includes('spire-csi driver serving')) || child.exitCode !== null, {
    timeoutMs: 120_000,
    message: 'the driver process to serve its CSI socket',
  });
  if (child.exitCode !== null) throw new Error(`driver exited with ${child.exitCode}:\n${lines.join('\n')}`);

  return {
    child,
    pid,
    lines,
    async rss() {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
    },
    async cpuMs() {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
    },
    async heap() {
      const before = existsSync(heapFile) ? (JSON.parse(await readFile(heapFile, 'utf8')) as { at: number }).at : 0;
      child.kill('SIGUSR2');
      const usage = await waitFor(
        async () => {
          if (!existsSync(heapFile)) return undefined;
          const doc = JSON.parse(await readFile(heapFile, 'utf8')) as NodeJS.MemoryUsage & { at: number };
          return doc.at > before ? doc : undefined;
        },
        { timeoutMs: 20_000, message: 'the driver heap probe' },
      );
      return usage;
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await exited;
    },
  };
}

/** The `--` flags between `node` and the script in deploy/Dockerfile's ENTRYPOINT. */
export async function imageNodeFlags(): Promise<string[]> {
  const dockerfile = await readFile(join(process.cwd(), 'deploy', 'Dockerfile'), 'utf8');
  const line = dockerfile.split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  if (line === undefined) throw new Error('bench: deploy/Dockerfile has no ENTRYPOINT');
  const argv = JSON.parse(line.slice('ENTRYPOINT '.length)) as string[];
  return argv.slice(1).filter((arg) => arg.startsWith('--'));
}

/** USER_HZ: Linux reports process CPU in these ticks; 100 on every mainstream architecture. */
const CLOCK_TICKS_PER_SECOND = 100;

export function makePods(count: number): EmulatedPod[] {
  return Array.from({ length: count }, () => KubeletEmulator.pod());
}

/** Kubelet's part before the call: the volume folder exists. Kept out of timed sections. */
export async function prepare(kubelet: KubeletEmulator, pods: readonly EmulatedPod[]): Promise<PublishedVolume[]> {
  return Promise.all(
    pods.map(async (pod) => {
      const volume = kubelet.volumeFor(pod);
      await mkdir(join(volume.targetPath, '..'), { recursive: true, mode: 0o750 });
      return volume;
    }),
  );
}

export async function publishAll(h: DriverHarness, pods: readonly EmulatedPod[], concurrency: number): Promise<PublishedVolume[]> {
  const kubelet = h.kubelet;
  await registerPods(h, pods);
  const volumes = await prepare(kubelet, pods);
  await mapLimit(pods, concurrency, (pod) => kubelet.publishRaw(kubelet.publishRequest(pod)));
  return volumes;
}

export async function unpublishAll(kubelet: KubeletEmulator, volumes: readonly PublishedVolume[], concurrency: number): Promise<void> {
  await mapLimit(volumes, concurrency, (volume) => kubelet.unpublish(volume));
}
