/**
 * Rotation under load. An SDK https server (createHttpsServer over a FileSource) runs in its own
 * process; its credential folder is rewritten every 300 ms with the driver's `..data` swap, cycling
 * through pre-minted SVIDs. A second process runs the SDK undici client (SpiffeDispatcher) keeping
 * 32 requests in flight; every fourth response closes its connection, so new handshakes keep
 * happening across swaps. This process writes the folder and probes: fresh tls.connect after fresh
 * tls.connect, reading the served certificate's serial. Measured: failed requests, and reload
 * latency from the `..data` rename to the first probe served the new certificate (and, on the
 * same clock, to the server process's FileSource 'update', which is when setSecureContext runs).
 * The same load runs against a naive server (fs.watch + setSecureContext, no validation), so the
 * SDK's reload is compared with doing it by hand in the same run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, watch } from 'node:fs';
import { createServer as createNaiveServer, type Server } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { request } from 'undici';
import { authorizeAny, createHttpsServer, FileSource, SpiffeDispatcher } from '@spire-csi/sdk';
import type { FileSourceOptions } from '@spire-csi/sdk/source';
import { createClientTlsOptions } from '@spire-csi/sdk/tls';
import type { MintedSvid } from '../test/helpers/test-ca.js';
import { onAbort } from './lib/abort.js';
import { printTargets, round, sleep, summarize, table, writeResult, type Summary, type Target } from './lib/report.js';
import { folderFiles, mintPki, sameSerial, servedSerial, staticSource, TimedFolderWriter } from './lib/sdk-material.js';

const DURATION_S = Number(process.env.BENCH_ROTATION_SECONDS ?? 30);
const ROTATE_EVERY_MS = 300;
const CONCURRENCY = 32;
const GENERATIONS = 6;

const epochNow = (): number => performance.timeOrigin + performance.now();

/**
 * `sdk`: createHttpsServer over a FileSource (validate, then swap). `naive`: what an application
 * does by hand: fs.watch on the folder, re-read the split files and setSecureContext on every
 * event, with no debounce and no validation. It sets the floor the SDK is compared with.
 */
type ServerKind = 'sdk' | 'naive';

interface ServeRequest {
  readonly folder: string;
  readonly options: FileSourceOptions;
  readonly kind: ServerKind;
}
type ServerMessage =
  | { type: 'listening'; port: number }
  | { type: 'update'; serial: string; epochMs: number }
  | { type: 'loop'; p50: number; p99: number; max: number };

interface LoadRequest {
  readonly port: number;
  readonly seconds: number;
  readonly chainPem: string;
  readonly keyPem: string;
  readonly rootPem: string;
}
interface LoadResult {
  readonly requests: number;
  readonly failures: Record<string, number>;
  readonly seconds: number;
}

/** Child: the application under test. */
function serve(): void {
  process.once('message', async ({ folder, options, kind }: ServeRequest) => {
    // How busy the server's event loop is: every await in a reload waits this long.
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    process.on('message', (m: { type?: string }) => {
      if (m.type !== 'loop?') return;
      const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
      process.send?.({ type: 'loop', p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) } satisfies ServerMessage);
    });
    let count = 0;
    const handler = (_req: unknown, res: { setHeader(name: string, value: string): void; end(body: string): void }): void => {
      // Every fourth response ends its connection, so the client keeps handshaking during swaps.
      if (++count % 4 === 0) res.setHeader('connection', 'close');
      res.end('ok');
    };
    let server: Server;
    if (kind === 'naive') {
      const read = () => ({
        cert: readFileSync(join(folder, 'svid.pem')),
        key: readFileSync(join(folder, 'svid_key.pem')),
        ca: readFileSync(join(folder, 'bundle.pem')),
      });
      const naive = createNaiveServer({ ...read(), requestCert: true, rejectUnauthorized: true }, handler);
      watch(folder, () => {
        try {
          const files = read();
          naive.setSecureContext({ ...files });
          const serial = new X509Certificate(files.cert).serialNumber;
          process.send?.({ type: 'update', serial, epochMs: epochNow() } satisfies ServerMessage);
        } catch {
          // A half-swapped folder: the next event tries again (this is the naive part).
        }
      });
      server = naive;
    } else {
      const source = new FileSource(folder, options);
      await source.ready(10_000);
      server = createHttpsServer(source, authorizeAny(), {}, handler);
      // Registered after the server's own listener: by the time this runs, setSecureContext has.
      source.on('update', (m) => process.send?.({ type: 'update', serial: m.svid.serialNumber, epochMs: epochNow() } satisfies ServerMessage));
    }
    server.listen(0, '127.0.0.1', () => {
      process.send?.({ type: 'listening', port: (server.address() as { port: number }).port } satisfies ServerMessage);
    });
    process.on('disconnect', () => process.exit(0));
  });
}

/** Child: the client keeping CONCURRENCY requests in flight. */
function load(): void {
  process.once('message', async (job: LoadRequest) => {
    const dispatcher = new SpiffeDispatcher(staticSource(job, job.rootPem), authorizeAny(), { connections: CONCURRENCY });
    const url = `https://127.0.0.1:${job.port}/`;
    const failures: Record<string, number> = {};
    let requests = 0;
    const started = performance.now();
    const end = started + job.seconds * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < end) {
          try {
            const res = await request(url, { dispatcher });
            await res.body.text();
            if (res.statusCode === 200) requests++;
            else failures[`HTTP ${res.statusCode}`] = (failures[`HTTP ${res.statusCode}`] ?? 0) + 1;
          } catch (err) {
            const key = (err as { code?: string }).code ?? (err as Error).message;
            failures[key] = (failures[key] ?? 0) + 1;
          }
        }
      }),
    );
    const result: LoadResult = { requests, failures, seconds: (performance.now() - started) / 1000 };
    process.send?.(result, () => {
      void dispatcher.destroy().finally(() => process.exit(0));
    });
  });
}

function child(role: '--serve' | '--load'): ChildProcess {
  const proc = fork(process.argv[1]!, [role], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const stop = onAbort(async () => void proc.kill('SIGKILL'));
  proc.once('exit', () => stop());
  return proc;
}

interface PhaseResult {
  readonly label: string;
  readonly debounceMs: number;
  readonly seconds: number;
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  readonly rotations: number;
  /** rename → first probe (fresh tls.connect) served the new certificate, measured when that probe completed. */
  readonly reloadMs: Summary;
  /** How long the probe handshakes themselves took: the resolution of reloadMs. */
  readonly probeHandshakeMs: Summary;
  /** rename → the server process's FileSource 'update' (read, parse, swap, setSecureContext). */
  readonly sourceUpdateMs: Summary;
  /** Generations replaced by the next rotation before any probe saw them. */
  readonly neverSeen: number;
  /** The server process's event-loop delay (ms) over the phase. */
  readonly serverLoopDelayMs: { p50: number; p99: number; max: number } | null;
}

interface Written {
  readonly serial: string;
  readonly at: number;
  seenAt?: number;
  updateAt?: number;
}

/** The latest write of `serial` made before `at`: what an observation at `at` of `serial` confirms. */
function writeFor(writes: readonly Written[], serial: string, at: number): Written | undefined {
  for (let i = writes.length - 1; i >= 0; i--) {
    const w = writes[i]!;
    if (w.at <= at && sameSerial(w.serial, serial)) return w;
  }
  return undefined;
}

async function phase(
  label: string,
  options: FileSourceOptions,
  seconds: number,
  svids: readonly MintedSvid[],
  rootPem: string,
  clientSvid: MintedSvid,
  kind: ServerKind = 'sdk',
): Promise<PhaseResult> {
  const root = await mkdtemp(join(tmpdir(), 'spire-csi-bench-rot-'));
  const folder = join(root, 'creds');
  const writer = new TimedFolderWriter(folder);
  await writer.write(folderFiles(svids[0]!, rootPem));
  const server = child('--serve');
  const loader = child('--load');
  const writes: Written[] = [];
  let loopDelay: { p50: number; p99: number; max: number } | null = null;
  let onLoop: (() => void) | undefined;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.on('message', (m: ServerMessage) => {
        if (m.type === 'listening') resolve(m.port);
        else if (m.type === 'loop') {
          loopDelay = { p50: m.p50, p99: m.p99, max: m.max };
          onLoop?.();
        } else {
          const w = writeFor(writes, m.serial, m.epochMs - performance.timeOrigin);
          if (w !== undefined) w.updateAt ??= m.epochMs - performance.timeOrigin;
        }
      });
      server.once('exit', (code) => reject(new Error(`server process exited with ${code}`)));
      server.send({ folder, options, kind } satisfies ServeRequest);
    });
    const loadDone = new Promise<LoadResult>((resolve, reject) => {
      loader.once('message', (m: LoadResult) => resolve(m));
      loader.once('exit', (code) => reject(new Error(`load process exited with ${code} before reporting`)));
    });
    loader.send({ port, seconds, chainPem: clientSvid.chainPem, keyPem: clientSvid.keyPem, rootPem } satisfies LoadRequest);
    // Let the load ramp up before the first rotation.
    await sleep(500);

    const probeOptions = createClientTlsOptions(staticSource(clientSvid, rootPem), authorizeAny());
    const probeDurations: number[] = [];
    let stop = false;
    const prober = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const serial = await servedSerial(port, probeOptions).catch(() => undefined);
        const t1 = performance.now();
        if (serial === undefined) continue;
        probeDurations.push(t1 - t0);
        const w = writeFor(writes, serial, t0);
        if (w !== undefined) w.seenAt ??= t1;
      }
    })();

    const started = performance.now();
    const end = started + (seconds - 1.5) * 1000;
    let next = started;
    while (performance.now() < end) {
      const svid = svids[(writes.length + 1) % svids.length]!;
      await writer.write(folderFiles(svid, rootPem), (at) => writes.push({ serial: svid.cert.serialNumber, at }));
      next += ROTATE_EVERY_MS;
      await sleep(Math.max(0, next - performance.now()));
    }
    // Room for the last generation to be picked up.
    await sleep(1000);
    stop = true;
    await prober;
    const loaded = await loadDone;
    await new Promise<void>((resolve) => {
      onLoop = resolve;
      server.send({ type: 'loop?' });
      setTimeout(resolve, 2000).unref();
    });
    const failed = Object.values(loaded.failures).reduce((a, b) => a + b, 0);
    return {
      label,
      debounceMs: options.debounceMs ?? 10,
      seconds: round(loaded.seconds, 1),
      requests: loaded.requests,
      requestsPerSecond: round(loaded.requests / loaded.seconds, 1),
      failed,
      failures: loaded.failures,
      rotations: writes.length,
      reloadMs: summarize(writes.filter((w) => w.seenAt !== undefined).map((w) => w.seenAt! - w.at)),
      probeHandshakeMs: summarize(probeDurations),
      sourceUpdateMs: summarize(writes.filter((w) => w.updateAt !== undefined).map((w) => w.updateAt! - w.at)),
      neverSeen: writes.filter((w) => w.seenAt === undefined).length,
      serverLoopDelayMs: loopDelay,
    };
  } finally {
    server.kill('SIGKILL');
    loader.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const pki = await mintPki();
  const svids: MintedSvid[] = [];
  for (let i = 0; i < GENERATIONS; i++) svids.push(await pki.ca.mint('spiffe://example.org/bench/server'));

  const phases = [
    await phase('FileSource defaults (debounce 10 ms)', {}, DURATION_S, svids, pki.ca.rootPem, pki.client),
    // Side by side, same run, same load: the application doing it by hand without validation.
    await phase('naive fs.watch + setSecureContext, no validation', {}, DURATION_S, svids, pki.ca.rootPem, pki.client, 'naive'),
    await phase('FileSource debounceMs: 5', { debounceMs: 5 }, Math.max(5, Math.round(DURATION_S / 2)), svids, pki.ca.rootPem, pki.client),
  ];
  table(
    `Rotation every ${ROTATE_EVERY_MS} ms under ${CONCURRENCY} concurrent requests (SpiffeDispatcher → createHttpsServer/FileSource)`,
    ['config', 's', 'requests', 'req/s', 'failed', 'rotations', 'never seen', 'reload p50', 'reload p99', 'probe hs p50', 'update p50', 'update p99', 'server loop delay p50/p99'],
    phases.map((p) => [
      p.label,
      p.seconds,
      p.requests,
      p.requestsPerSecond,
      p.failed,
      p.rotations,
      p.neverSeen,
      p.reloadMs.p50,
      p.reloadMs.p99,
      p.probeHandshakeMs.p50,
      p.sourceUpdateMs.p50,
      p.sourceUpdateMs.p99,
      p.serverLoopDelayMs === null ? '-' : `${p.serverLoopDelayMs.p50}/${p.serverLoopDelayMs.p99}`,
    ]),
  );
  for (const p of phases) if (p.failed > 0) console.log(`${p.label}: failures`, p.failures);
  const defaults = phases[0]!;
  const naive = phases[1]!;
  const fast = phases[2]!;
  const ratio = round(defaults.reloadMs.p99 / naive.reloadMs.p99, 2);
  console.log(`SDK ÷ naive, rename → fresh handshake got the new certificate, p99: ${ratio}`);
  const targets: Target[] = [
    { name: 'SDK ÷ naive server, reload p99 (same run)', target: '<= 1.1', value: ratio, met: ratio <= 1.1 },
    { name: 'failed requests (defaults)', target: '0', value: defaults.failed, met: defaults.failed === 0 },
    { name: 'reload p99, ms (defaults)', target: '<= 50', value: defaults.reloadMs.p99, met: defaults.reloadMs.p99 <= 50 },
    { name: 'failed requests (debounce 5 ms)', target: '0', value: fast.failed, met: fast.failed === 0 },
    { name: 'reload p99, ms (debounce 5 ms)', target: '<= 50', value: fast.reloadMs.p99, met: fast.reloadMs.p99 <= 50 },
  ];
  printTargets(targets);
  writeResult('rotation-load', { rotateEveryMs: ROTATE_EVERY_MS, concurrency: CONCURRENCY, phases }, targets);
}

if (process.argv.includes('--serve')) serve();
else if (process.argv.includes('--load')) load();
else
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
