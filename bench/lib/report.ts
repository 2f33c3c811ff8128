/**
 * What every bench reports: percentiles, a printed table, and a JSON result under bench/results/
 * that carries the machine and command it was measured with, since figures mean nothing without them.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';

/** The machine's load when this bench started: the figures are only as good as the machine was idle. */
const LOAD_AT_START = loadavg();

/** bench/run.mjs sets it; the fallback assumes the repository root as working directory. */
export const RESULTS_DIR = process.env.BENCH_RESULTS_DIR ?? join(process.cwd(), 'bench', 'results');

export interface Summary {
  readonly n: number;
  readonly min: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    min: round(sorted[0] ?? Number.NaN),
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? Number.NaN),
    mean: round(sorted.length === 0 ? Number.NaN : sum / sorted.length),
  };
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export const MiB = 1024 * 1024;
export const toMiB = (bytes: number): number => round(bytes / MiB, 1);

export function table(title: string, header: readonly string[], rows: readonly (readonly (string | number)[])[]): void {
  const cells = [header, ...rows].map((row) => row.map((c) => String(c)));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const line = (row: readonly string[]): string => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(`\n${title}`);
  console.log(line(cells[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells.slice(1)) console.log(line(row));
}

export interface Target {
  readonly name: string;
  readonly target: string;
  readonly value: number | string;
  readonly met: boolean;
}

export function printTargets(targets: readonly Target[]): void {
  table('Targets', ['target', 'goal', 'measured', 'met'], targets.map((t) => [t.name, t.target, t.value, t.met ? 'yes' : 'NO']));
}

export function machineInfo(): Record<string, unknown> {
  const cpuList = cpus();
  let gitCommit: string | null;
  try {
    gitCommit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    gitCommit = null;
  }
  return {
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    memoryGiB: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    v8: process.versions.v8,
    openssl: process.versions.openssl,
    platform: `${process.platform} ${release()}`,
    loadavgAtStart: LOAD_AT_START.map((l) => round(l, 2)),
    loadavgAtEnd: loadavg().map((l) => round(l, 2)),
    gitCommit,
  };
}

/** Writes bench/results/<name>.json (and -<node major> for other Node versions, so runs can be compared). */
export function writeResult(name: string, results: Record<string, unknown>, targets: readonly Target[] = []): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const major = process.versions.node.split('.')[0];
  const suffix = major === '20' ? '' : `-node${major}`;
  const file = join(RESULTS_DIR, `${name}${suffix}.json`);
  const doc = {
    bench: name,
    date: new Date().toISOString(),
    command: process.env.BENCH_COMMAND ?? `node ${process.argv.slice(1).join(' ')}`,
    machine: machineInfo(),
    note:
      process.env.BENCH_NOTE ??
      'Measured on a shared 2-core machine while other test suites were running; treat as indicative, re-run on an idle machine.',
    /** CPU profiling (BENCH_CPU_PROF) slows the driver: such figures are for finding hotspots, not for targets. */
    profiled: process.env.BENCH_CPU_PROF !== undefined,
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_') || k === 'UV_THREADPOOL_SIZE').filter(([k]) => !['BENCH_COMMAND', 'BENCH_RESULTS_DIR', 'BENCH_HEAP_PROBE', 'BENCH_DRIVER_CLI'].includes(k))),
    targets,
    results,
  };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
  return file;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Forces full collections (needs --expose-gc) so heap figures are live data, not garbage. */
export async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('bench: run node with --expose-gc (npm run bench does)');
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
