/**
 * 1,000 volumes on one spawned driver: its RSS and heap at 0, 100 and 1,000 volumes; the fan-out
 * of one agent rotation to every folder; and recovery after SIGKILL (every stream resubscribed,
 * then a rotation landing everywhere). Everything is unpublished at the end, and the harness
 * unmounts whatever is left even when a step fails.
 */
import { performance } from 'node:perf_hooks';
import type { PublishedVolume } from '../test/helpers/kubelet-emulator.js';
import { waitFor } from '../test/helpers/wait-for.js';
import { createHarness, makePods, publishAll, REGISTRATION, spawnDriver, unpublishAll, type SpawnedDriver } from './lib/driver-env.js';
import { printTargets, round, summarize, table, toMiB, writeResult, type Target } from './lib/report.js';
import { SerialWatch, serialOf } from './lib/serial-watch.js';

const VOLUMES = Number(process.env.BENCH_SCALE_VOLUMES ?? 1000);
const STEPS = [0, Math.min(100, VOLUMES), VOLUMES].filter((n, i, all) => all.indexOf(n) === i);
const CONCURRENCY = 25;
/** Fan-outs in a row before the restart; more than one shows whether memory grows per rotation. */
const ROTATIONS = Number(process.env.BENCH_SCALE_ROTATIONS ?? 3);

interface MemoryPoint {
  readonly volumes: number;
  readonly rssMiB: number;
  readonly hwmMiB: number;
  readonly heapUsedMiB: number;
  readonly heapTotalMiB: number;
  readonly externalMiB: number;
  readonly arrayBuffersMiB: number;
}

async function memoryAt(driver: SpawnedDriver, volumes: number): Promise<MemoryPoint> {
  const heap = await driver.heap();
  const { rss, hwm } = await driver.rss();
  return {
    volumes,
    rssMiB: toMiB(rss),
    hwmMiB: toMiB(hwm),
    heapUsedMiB: toMiB(heap.heapUsed),
    heapTotalMiB: toMiB(heap.heapTotal),
    externalMiB: toMiB(heap.external),
    arrayBuffersMiB: toMiB(heap.arrayBuffers),
  };
}

/** rotateNow(), then the time from the agent's push until every folder serves a new serial. */
async function fanOut(
  h: Awaited<ReturnType<typeof createHarness>>,
  watch: SerialWatch,
  targets: readonly string[],
  driver: SpawnedDriver,
): Promise<{
  agentIssuedMs: number;
  agentWriteMs: number;
  allLandedMs: number;
  settledMs: number;
  perFolderMs: ReturnType<typeof summarize>;
  driverCpuPerVolumeMs: number;
}> {
  const old = await serialOf(targets[0]!);
  if (old === undefined) throw new Error('bench: no identity.json in the first volume');
  watch.arm(old);
  const cpuBefore = await driver.cpuMs();
  const called = performance.now();
  const before = h.agent.lastSvidPush;
  await h.agent.rotateNow();
  const push = h.agent.lastSvidPush;
  if (push === undefined || push === before) throw new Error('bench: the agent pushed no SVIDs');
  // Timed from the agent's push (its first write after issuing every SVID): the dev agent mints
  // 1,000 keys in seconds, which a SPIRE agent has done ahead of time; that is not the driver's.
  const t0 = push.startedAt;
  await watch.waitAll(120_000);
  const times = [...watch.changedAt.values()].map((t) => t - t0);
  watch.close();
  await watch.waitSettled(120_000);
  const settledMs = performance.now() - t0;
  // Everything the driver spent on this rotation, cleanup of the replaced payloads included
  // (the driver is otherwise idle here), per volume.
  const driverCpuPerVolumeMs = ((await driver.cpuMs()) - cpuBefore) / targets.length;
  return {
    driverCpuPerVolumeMs: round(driverCpuPerVolumeMs, 2),
    agentIssuedMs: round(push.startedAt - called),
    agentWriteMs: round(push.endedAt - push.startedAt),
    allLandedMs: round(Math.max(...times)),
    settledMs: round(settledMs),
    perFolderMs: summarize(times),
  };
}

async function main(): Promise<void> {
  const h = await createHarness();
  const results: Record<string, unknown> = { volumes: VOLUMES, registration: REGISTRATION };
  console.log(`registration: ${REGISTRATION} (${REGISTRATION === 'per-pod' ? 'one entry, SVID and key per pod' : 'one SVID shared by every volume'})`);
  let volumes: PublishedVolume[] = [];
  let driver: SpawnedDriver | undefined;
  try {
    const tStart = performance.now();
    driver = await spawnDriver(h);
    results.firstStartServingMs = round(performance.now() - tStart);
    const memory: MemoryPoint[] = [];
    const publishRates: { from: number; to: number; seconds: number; perSecond: number }[] = [];
    for (const step of STEPS) {
      const missing = step - volumes.length;
      if (missing > 0) {
        const t0 = performance.now();
        volumes.push(...(await publishAll(h, makePods(missing), CONCURRENCY)));
        const seconds = (performance.now() - t0) / 1000;
        publishRates.push({ from: step - missing, to: step, seconds: round(seconds), perSecond: round(missing / seconds, 1) });
        console.log(`published ${step} volumes (${round(missing / seconds, 1)}/s at ${CONCURRENCY} concurrent)`);
      }
      memory.push(await memoryAt(driver, step));
    }
    table('Driver memory (spawned process; heap after GC via the preloaded probe), MiB', ['volumes', 'RSS', 'RSS peak', 'heapUsed', 'heapTotal', 'external', 'arrayBuffers'], memory.map((m) => [m.volumes, m.rssMiB, m.hwmMiB, m.heapUsedMiB, m.heapTotalMiB, m.externalMiB, m.arrayBuffersMiB]));
    results.memory = memory;
    results.publishRates = publishRates;

    const targets = volumes.map((v) => v.targetPath);
    const watch = new SerialWatch(targets);
    const fans: Awaited<ReturnType<typeof fanOut>>[] = [];
    const memoryAfterRotations: MemoryPoint[] = [];
    for (let i = 0; i < ROTATIONS; i++) {
      fans.push(await fanOut(h, watch, targets, driver));
      memoryAfterRotations.push(await memoryAt(driver, VOLUMES));
    }
    const fan = fans[0]!;
    results.fanOut = fan;
    results.fanOuts = fans;
    results.memoryAfterRotations = memoryAfterRotations;
    table(`Rotation fan-out to ${VOLUMES} volumes (ms from the agent's push; its issuance before that not counted), then driver memory (MiB)`, ['rotation', 'agent issuing', 'agent writing', 'all landed', 'p50', 'p95', 'p99', 'writer done', 'CPU/volume', 'RSS', 'heapUsed'], fans.map((f, i) => [
      i + 1,
      f.agentIssuedMs,
      f.agentWriteMs,
      f.allLandedMs,
      f.perFolderMs.p50,
      f.perFolderMs.p95,
      f.perFolderMs.p99,
      f.settledMs,
      f.driverCpuPerVolumeMs,
      memoryAfterRotations[i]!.rssMiB,
      memoryAfterRotations[i]!.heapUsedMiB,
    ]));

    // Restart recovery.
    await driver.kill('SIGKILL');
    driver = undefined;
    await waitFor(() => h.agent.streamCounts.svid === 0, { timeoutMs: 60_000, message: 'the agent to see the driver streams end' });
    // Streams are counted as they arrive, independently of when the driver reports serving.
    let streamsAt: number | undefined;
    const milestones = [1, Math.ceil(VOLUMES / 10), Math.ceil(VOLUMES / 2), VOLUMES];
    /** Stream count → ms from spawn when the agent first saw that many: shows whether streams trickle in. */
    const reachedAt: Record<number, number> = {};
    const t0 = performance.now();
    const counter = setInterval(() => {
      const count = h.agent.streamCounts.svid;
      for (const m of milestones) if (count >= m && reachedAt[m] === undefined) reachedAt[m] = round(performance.now() - t0);
      if (streamsAt === undefined && count >= VOLUMES) streamsAt = performance.now();
    }, 5);
    let servingMs: number;
    try {
      driver = await spawnDriver(h);
      servingMs = performance.now() - t0;
      await waitFor(() => streamsAt !== undefined, { timeoutMs: 120_000, message: `${VOLUMES} SVID streams after restart` });
    } finally {
      clearInterval(counter);
    }
    const resubscribedMs = streamsAt! - t0;
    const rotatedAfterMs = performance.now() - t0;
    const rotation = await fanOut(h, watch, targets, driver);
    const recovery = {
      servingMs: round(servingMs),
      allStreamsMs: round(resubscribedMs),
      rotationAfterRestartMs: rotation.allLandedMs,
      totalMs: round(rotatedAfterMs + rotation.allLandedMs),
      streamsReachedAtMs: reachedAt,
      resumeLog: driver.lines.find((l) => l.includes('recorded volumes resumed')) ?? null,
    };
    results.recovery = recovery;
    table('Restart after SIGKILL (ms from spawn)', ['serving', `${VOLUMES} streams`, 'rotation (sent when both) landed in', 'total'], [
      [recovery.servingMs, recovery.allStreamsMs, recovery.rotationAfterRestartMs, recovery.totalMs],
    ]);
    console.log(`streams seen by the agent (count: ms from spawn): ${JSON.stringify(reachedAt)}`);
    const afterRestart = await memoryAt(driver, VOLUMES);
    results.memoryAfterRestart = afterRestart;

    const t1 = performance.now();
    await unpublishAll(h.kubelet, volumes, CONCURRENCY);
    results.unpublishAllSeconds = round((performance.now() - t1) / 1000);
    console.log(`unpublished ${VOLUMES} volumes in ${results.unpublishAllSeconds} s`);
    volumes = [];
    results.memoryAfterUnpublish = await memoryAt(driver, 0);
    await driver.kill('SIGTERM');
    driver = undefined;

    const at = memory.find((m) => m.volumes === VOLUMES);
    const targetsMet: Target[] = [
      { name: `RSS at ${VOLUMES} volumes (MiB)`, target: '<= 150', value: at?.rssMiB ?? NaN, met: (at?.rssMiB ?? Infinity) <= 150 },
      { name: `fan-out to ${VOLUMES} (ms, worst of ${ROTATIONS})`, target: '<= 1000', value: Math.max(...fans.map((f) => f.allLandedMs)), met: fans.every((f) => f.allLandedMs <= 1000) },
      {
        name: `RSS at ${VOLUMES} volumes after ${ROTATIONS} rotations (MiB)`,
        target: '<= 150',
        value: memoryAfterRotations[memoryAfterRotations.length - 1]?.rssMiB ?? NaN,
        met: (memoryAfterRotations[memoryAfterRotations.length - 1]?.rssMiB ?? Infinity) <= 150,
      },
      {
        name: 'driver CPU per volume for one rotation (ms, worst of the rotations)',
        target: '<= 1',
        value: Math.max(...fans.map((f) => f.driverCpuPerVolumeMs)),
        met: fans.every((f) => f.driverCpuPerVolumeMs <= 1),
      },
      { name: 'CSI socket serving after SIGKILL (ms)', target: '<= 1000', value: recovery.servingMs, met: recovery.servingMs <= 1000 },
      { name: `RSS at ${VOLUMES} volumes after the restart (MiB)`, target: '<= 150', value: afterRestart.rssMiB, met: afterRestart.rssMiB <= 150 },
      { name: `recovery: ${VOLUMES} streams resubscribed (ms)`, target: '<= 5000', value: recovery.allStreamsMs, met: recovery.allStreamsMs <= 5000 },
      { name: 'recovery incl. a rotation landing everywhere (ms)', target: '<= 5000', value: recovery.totalMs, met: recovery.totalMs <= 5000 },
    ];
    printTargets(targetsMet);
    writeResult(`scale${REGISTRATION === 'shared' ? '-shared' : ''}${VOLUMES === 1000 ? '' : `-${VOLUMES}`}`, results, targetsMet);
  } finally {
    await driver?.kill('SIGKILL');
    await h.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
