/**
 * NodePublishVolume latency at 1, 10 and 100 concurrent publishes against the real driver: the
 * CLI in its own process (as in a cluster), a dev agent that answers at once, real tmpfs.
 * Then the same bursts against an in-process driver with timers at every seam, for the breakdown
 * of where the time goes.
 */
import { performance } from 'node:perf_hooks';
import type { DriverHarness } from '../test/helpers/driver-harness.js';
import type { PublishedVolume } from '../test/helpers/kubelet-emulator.js';
import { createHarness, makePods, prepare, registerPods, REGISTRATION, spawnDriver, unpublishAll } from './lib/driver-env.js';
import { PHASES, startInstrumentedDriver, type MarkBook } from './lib/instrumented-driver.js';
import { printTargets, round, summarize, table, writeResult, type Summary } from './lib/report.js';

/** BENCH_PUBLISH_LEVELS="1:100,10:15,100:3" (concurrency:bursts) overrides, for quick experiments. */
const LEVELS: readonly { concurrency: number; bursts: number }[] = (process.env.BENCH_PUBLISH_LEVELS ?? '1:100,10:15,100:3')
  .split(',')
  .map((pair) => pair.split(':').map(Number))
  .map(([concurrency, bursts]) => ({ concurrency: concurrency!, bursts: bursts! }));
const WARMUP = 20;

interface LevelResult {
  readonly concurrency: number;
  readonly publishMs: Summary;
  readonly unpublishMs: Summary;
  /** Publishes per second within bursts. */
  readonly throughput: number;
}

/** One burst: every publish of it starts together; each is timed from its own call to its answer. */
async function burst(
  h: DriverHarness,
  concurrency: number,
  book?: MarkBook,
): Promise<{ latencies: number[]; wallMs: number; volumes: PublishedVolume[] }> {
  const kubelet = h.kubelet;
  const pods = makePods(concurrency);
  // Registration (and the agent's issuance of each new pod's SVID) happens before the timed calls:
  // a SPIRE agent has synced a pod's entry and holds its SVID by the time kubelet publishes.
  await registerPods(h, pods);
  const volumes = await prepare(kubelet, pods);
  pods.forEach((pod, i) => book?.expect(volumes[i]!.volumeId, volumes[i]!.targetPath, pod.uid));
  const started = performance.now();
  const latencies = await Promise.all(
    pods.map(async (pod, i) => {
      const t0 = performance.now();
      book?.mark(volumes[i]!.volumeId, 'clientStart');
      await kubelet.publishRaw(kubelet.publishRequest(pod));
      const t1 = performance.now();
      book?.mark(volumes[i]!.volumeId, 'clientEnd');
      return t1 - t0;
    }),
  );
  return { latencies, wallMs: performance.now() - started, volumes };
}

async function runLevels(h: DriverHarness, label: string, book?: MarkBook): Promise<LevelResult[]> {
  const kubelet = h.kubelet;
  for (let i = 0; i < WARMUP; i++) {
    const { volumes } = await burst(h, 1);
    await unpublishAll(kubelet, volumes, 1);
  }
  book?.marks.clear();
  const results: LevelResult[] = [];
  for (const { concurrency, bursts } of LEVELS) {
    const publish: number[] = [];
    const unpublish: number[] = [];
    let wall = 0;
    for (let b = 0; b < bursts; b++) {
      const { latencies, wallMs, volumes } = await burst(h, concurrency, book);
      publish.push(...latencies);
      wall += wallMs;
      await Promise.all(
        volumes.map(async (volume) => {
          const t0 = performance.now();
          await kubelet.unpublish(volume);
          unpublish.push(performance.now() - t0);
        }),
      );
    }
    results.push({
      concurrency,
      publishMs: summarize(publish),
      unpublishMs: summarize(unpublish),
      throughput: round((publish.length / wall) * 1000, 1),
    });
  }
  table(
    `NodePublishVolume latency, ${label} (ms)`,
    ['concurrent', 'n', 'p50', 'p95', 'p99', 'max', 'publishes/s', 'unpublish p50', 'unpublish p99'],
    results.map((r) => [
      r.concurrency,
      r.publishMs.n,
      r.publishMs.p50,
      r.publishMs.p95,
      r.publishMs.p99,
      r.publishMs.max,
      r.throughput,
      r.unpublishMs.p50,
      r.unpublishMs.p99,
    ]),
  );
  return results;
}

/** Phase durations per concurrency level, from the in-process driver's marks. */
function breakdown(book: MarkBook, volumesByLevel: Map<number, string[]>): Record<string, Record<string, Summary>> {
  const out: Record<string, Record<string, Summary>> = {};
  for (const [concurrency, ids] of volumesByLevel) {
    const phases: Record<string, Summary> = {};
    for (const [name, from, to] of PHASES) {
      const values = ids
        .map((id) => book.marks.get(id))
        .filter((m): m is Record<string, number> => m !== undefined && m[from] !== undefined && m[to] !== undefined)
        .map((m) => m[to]! - m[from]!);
      phases[name] = summarize(values);
    }
    const totals = ids.map((id) => book.marks.get(id)).filter((m) => m?.clientStart !== undefined && m.clientEnd !== undefined);
    phases.total = summarize(totals.map((m) => m!.clientEnd! - m!.clientStart!));
    out[String(concurrency)] = phases;
  }
  return out;
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = { registration: REGISTRATION };
  console.log(`registration: ${REGISTRATION}`);

  // 1. The shipped CLI in its own process.
  const h = await createHarness();
  let spawned: LevelResult[];
  try {
    const driver = await spawnDriver(h);
    spawned = await runLevels(h, `spawned driver (${process.env.BENCH_DRIVER_CLI?.includes('dist') ? 'driver/dist/cli.js' : 'driver/src/cli.ts bundled'})`);
    await driver.kill('SIGTERM');
  } finally {
    await h.cleanup();
  }
  results.spawned = spawned;

  // 2. In-process, instrumented: the breakdown.
  const h2 = await createHarness();
  try {
    const driver = await startInstrumentedDriver({ ...h2.config, logLevel: 'info' });
    try {
      const book = driver.book;
      const kubelet = h2.kubelet;
      for (let i = 0; i < WARMUP; i++) {
        const { volumes } = await burst(h2, 1, book);
        await unpublishAll(kubelet, volumes, 1);
      }
      book.marks.clear();
      const byLevel = new Map<number, string[]>();
      const inProcess: LevelResult[] = [];
      // Half the bursts of the spawned run: the breakdown needs fewer samples than the percentiles.
      for (const { concurrency, bursts: spawnedBursts } of LEVELS) {
        const bursts = Math.max(1, Math.ceil(spawnedBursts / 2));
        const ids: string[] = [];
        byLevel.set(concurrency, ids);
        const publish: number[] = [];
        let wall = 0;
        for (let b = 0; b < bursts; b++) {
          const { latencies, wallMs, volumes } = await burst(h2, concurrency, book);
          publish.push(...latencies);
          ids.push(...volumes.map((v) => v.volumeId));
          wall += wallMs;
          await unpublishAll(kubelet, volumes, concurrency);
        }
        inProcess.push({ concurrency, publishMs: summarize(publish), unpublishMs: summarize([]), throughput: round((publish.length / wall) * 1000, 1) });
      }
      table(
        'NodePublishVolume latency, in-process instrumented driver (ms)',
        ['concurrent', 'n', 'p50', 'p95', 'p99', 'max', 'publishes/s'],
        inProcess.map((r) => [r.concurrency, r.publishMs.n, r.publishMs.p50, r.publishMs.p95, r.publishMs.p99, r.publishMs.max, r.throughput]),
      );
      const phases = breakdown(book, byLevel);
      const names = [...PHASES.map(([name]) => name), 'total'];
      table(
        'Where a publish spends its time, in-process instrumented driver (p50 / p99 ms per phase)',
        ['phase', ...LEVELS.map((l) => `c=${l.concurrency} p50`), ...LEVELS.map((l) => `c=${l.concurrency} p99`)],
        names.map((name) => [
          name,
          ...LEVELS.map((l) => phases[String(l.concurrency)]?.[name]?.p50 ?? ''),
          ...LEVELS.map((l) => phases[String(l.concurrency)]?.[name]?.p99 ?? ''),
        ]),
      );
      results.inProcessInstrumented = { levels: inProcess, phases };
    } finally {
      await driver.stop();
    }
  } finally {
    await h2.cleanup();
  }

  const p99at100 = spawned.find((r) => r.concurrency === 100)?.publishMs.p99 ?? Number.NaN;
  results.env = { UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? null, levels: LEVELS };
  const p50at1 = spawned.find((r) => r.concurrency === 1)?.publishMs.p50 ?? NaN;
  const targets = [
    { name: 'single publish p50 (spawned driver)', target: '<= 10 ms', value: p50at1, met: p50at1 <= 10 },
    { name: 'publish p99 at 100 concurrent (spawned driver)', target: '<= 250 ms', value: p99at100, met: p99at100 <= 250 },
  ];
  printTargets(targets);
  writeResult('publish', results, targets);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
