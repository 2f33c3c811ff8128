/**
 * Memory over rotations: a FileSource feeding an SDK https server, its folder rotated 10,000 times
 * (each rotation waited for until the source has swapped), heap measured after full GCs at 100
 * rotations and every 1,000 after. A leak per rotation (listeners, timers, watchers, secure
 * contexts, cached PEM) shows as a slope; noise does not.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { authorizeAny, createHttpsServer, FileSource } from '@spire-csi/sdk';
import type { X509Material } from '@spire-csi/sdk/source';
import { createClientTlsOptions } from '@spire-csi/sdk/tls';
import type { MintedSvid } from '../test/helpers/test-ca.js';
import { onAbort } from './lib/abort.js';
import { countObjects, parkByName, restoreByName, topGrowth, type HeapCounts } from './lib/heap-count.js';
import { collect, MiB, printTargets, round, summarize, table, toMiB, writeResult, type Target } from './lib/report.js';
import { folderFiles, mintPki, sameSerial, servedSerial, staticSource, TimedFolderWriter } from './lib/sdk-material.js';

const ROTATIONS = Number(process.env.BENCH_MEMORY_ROTATIONS ?? 10_000);
const BASELINE_AT = 100;
const SAMPLE_EVERY = Math.max(1, Math.round(ROTATIONS / 10));
const GENERATIONS = 6;
/** Debounce 0: each rotation is waited for, so the default 50 ms would only add idle time. */
const SOURCE_OPTIONS = { debounceMs: 0 };
/** What a per-rotation leak would be made of. */
const TRACKED = ['X509Svid', 'X509Bundle', 'X509BundleSet', 'X509Certificate', 'PrivateKeyObject', 'SecureContext', 'TLSSocket', 'Timeout', 'FSWatcher', 'StatWatcher'];

interface Sample {
  readonly rotations: number;
  readonly heapUsedMiB: number;
  /** JIT code (code space); it grows while V8 optimizes and deoptimizes, which is not a leak. */
  readonly codeMiB: number;
  /** heapUsed without code: the objects the program keeps alive. */
  readonly dataMiB: number;
  readonly externalMiB: number;
  readonly arrayBuffersMiB: number;
  readonly rssMiB: number;
}

async function sample(rotations: number): Promise<Sample> {
  await collect();
  const m = process.memoryUsage();
  const code = getHeapSpaceStatistics()
    .filter((space) => space.space_name.includes('code'))
    .reduce((a, space) => a + space.space_used_size, 0);
  return {
    rotations,
    heapUsedMiB: toMiB(m.heapUsed),
    codeMiB: toMiB(code),
    dataMiB: round((m.heapUsed - code) / MiB, 2),
    externalMiB: toMiB(m.external),
    arrayBuffersMiB: toMiB(m.arrayBuffers),
    rssMiB: toMiB(m.rss),
  };
}

/** Least-squares slope of y over x. */
function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const num = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0);
  const den = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

async function main(): Promise<void> {
  const pki = await mintPki();
  const svids: MintedSvid[] = [];
  for (let i = 0; i < GENERATIONS; i++) svids.push(await pki.ca.mint('spiffe://example.org/bench/server'));
  const root = await mkdtemp(join(tmpdir(), 'spire-csi-bench-mem-'));
  onAbort(() => rm(root, { recursive: true, force: true }));
  const folder = join(root, 'creds');
  const baselineFile = join(root, 'baseline-heap-counts.json');
  const writer = new TimedFolderWriter(folder);
  await writer.write(folderFiles(svids[0]!, pki.ca.rootPem));

  const source = new FileSource(folder, SOURCE_OPTIONS);
  await source.ready(10_000);
  const server = createHttpsServer(source, authorizeAny(), {}, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;

  let waiting: { serial: string; resolve: () => void } | undefined;
  source.on('update', (m: X509Material) => {
    if (waiting !== undefined && sameSerial(m.svid.serialNumber, waiting.serial)) waiting.resolve();
  });
  let errors = 0;
  source.on('error', () => errors++);

  const reload: number[] = [];
  const samples: Sample[] = [];
  let baseline: Sample | undefined;
  let countsAtBaseline: HeapCounts | undefined;
  let countsAtEnd: HeapCounts | undefined;
  let probeMismatches = 0;
  const started = performance.now();
  try {
    for (let i = 1; i <= ROTATIONS; i++) {
      const svid = svids[i % svids.length]!;
      const serial = svid.cert.serialNumber;
      const updated = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`bench: rotation ${i} was not picked up within 10 s`)), 10_000);
        waiting = {
          serial,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      });
      const at = await writer.write(folderFiles(svid, pki.ca.rootPem));
      await updated;
      reload.push(performance.now() - at);
      waiting = undefined;
      if (i === BASELINE_AT || i % SAMPLE_EVERY === 0) {
        // A fresh client each time: a client remembers the server chains it verified (bounded,
        // per trust bundle), and those would be the instrument's memory, not the server's.
        const probe = createClientTlsOptions(staticSource(pki.client, pki.ca.rootPem), authorizeAny());
        if (!sameSerial(await servedSerial(port, probe), serial)) probeMismatches++;
        // The baseline's per-type table waits on disk: in memory it would be a few MiB of this
        // bench's own bookkeeping inside every later sample.
        if (i === BASELINE_AT) countsAtBaseline = await parkByName(await countObjects(TRACKED), baselineFile);
        const s = await sample(i);
        if (i === BASELINE_AT) baseline = s;
        if (i === ROTATIONS) countsAtEnd = await countObjects(TRACKED);
        if (i === ROTATIONS && countsAtBaseline !== undefined) countsAtBaseline = await restoreByName(countsAtBaseline, baselineFile);
        samples.push(s);
        console.log(`${i} rotations: heapUsed ${s.heapUsedMiB} MiB (data ${s.dataMiB}, code ${s.codeMiB}), rss ${s.rssMiB} MiB (${round((performance.now() - started) / 1000, 1)} s)`);
      }
    }
  } finally {
    server.close();
    await source.close();
    await rm(root, { recursive: true, force: true });
  }

  const last = samples[samples.length - 1]!;
  const first = baseline ?? last;
  const growthMiB = round(last.heapUsedMiB - first.heapUsedMiB, 2);
  const dataGrowthMiB = round(last.dataMiB - first.dataMiB, 2);
  const perThousandKiB = (y: (s: Sample) => number): number => round((slope(samples.map((s) => ({ x: s.rotations, y: y(s) * MiB }))) * 1000) / 1024, 1);
  const slopes = { heapUsed: perThousandKiB((s) => s.heapUsedMiB), data: perThousandKiB((s) => s.dataMiB), code: perThousandKiB((s) => s.codeMiB) };
  table(
    'Heap after GC over rotations (FileSource + createHttpsServer), MiB',
    ['rotations', 'heapUsed', 'data', 'code', 'external', 'arrayBuffers', 'rss'],
    samples.map((s) => [s.rotations, s.heapUsedMiB, s.dataMiB, s.codeMiB, s.externalMiB, s.arrayBuffersMiB, s.rssMiB]),
  );
  const before = countsAtBaseline!;
  const after = countsAtEnd!;
  table(
    `Live objects (heap snapshot) after ${BASELINE_AT} and ${ROTATIONS} rotations`,
    ['object', String(BASELINE_AT), String(ROTATIONS)],
    [
      ...TRACKED.map((name) => [name, before.objects[name] ?? 0, after.objects[name] ?? 0]),
      ['JIT code + metadata (KiB)', round(before.codeBytes / 1024), round(after.codeBytes / 1024)],
      ['everything else (KiB)', round((before.totalBytes - before.codeBytes) / 1024), round((after.totalBytes - after.codeBytes) / 1024)],
    ],
  );
  const grown = topGrowth(before, after, 12);
  table(
    `What grew most from ${BASELINE_AT} to ${ROTATIONS} rotations (heap snapshot, by V8 type:constructor)`,
    ['type:name', 'count', 'KiB'],
    grown.map((g) => [g.name, g.count, round(g.bytes / 1024, 1)]),
  );
  const objectGrowth = TRACKED.filter((name) => (after.objects[name] ?? 0) > (before.objects[name] ?? 0) + 2);
  const nonCodeGrowthMiB = round((after.totalBytes - after.codeBytes - (before.totalBytes - before.codeBytes)) / MiB, 2);
  const reloadSummary = summarize(reload);
  console.log(`growth ${BASELINE_AT} → ${ROTATIONS}: heapUsed ${growthMiB} MiB, data ${dataGrowthMiB} MiB; slope per 1,000 rotations (KiB): ${JSON.stringify(slopes)}`);
  console.log(`rename → FileSource update, unloaded, debounce 0: p50 ${reloadSummary.p50} ms, p99 ${reloadSummary.p99} ms; source errors ${errors}; probe mismatches ${probeMismatches}`);
  // A leak of 100 bytes per rotation would be ~1 MiB of data over 10,000 rotations.
  const targets: Target[] = [
    { name: `heap growth without JIT code ${BASELINE_AT} → ${ROTATIONS} (MiB)`, target: '< 1 (noise)', value: nonCodeGrowthMiB, met: nonCodeGrowthMiB < 1 },
    { name: 'tracked object kinds whose count grew', target: 'none', value: objectGrowth.join(', ') || 'none', met: objectGrowth.length === 0 },
    { name: `heapUsed growth incl. JIT code (MiB)`, target: 'info', value: growthMiB, met: true },
    { name: 'FileSource errors / served-cert mismatches', target: '0', value: errors + probeMismatches, met: errors + probeMismatches === 0 },
  ];
  printTargets(targets);
  writeResult('rotation-memory', {
    rotations: ROTATIONS,
    sourceOptions: SOURCE_OPTIONS,
    seconds: round((performance.now() - started) / 1000, 1),
    samples,
    heapGrowthMiB: growthMiB,
    dataHeapGrowthMiB: dataGrowthMiB,
    heapGrowthWithoutCodeMiB: nonCodeGrowthMiB,
    liveObjects: { [BASELINE_AT]: before, [ROTATIONS]: after },
    slopeKiBPer1000Rotations: slopes,
    renameToUpdateMs: reloadSummary,
    sourceErrors: errors,
    probeMismatches,
  }, targets);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
