#!/usr/bin/env node
// `npm run bench [-- <name>...] [--node /path/to/node]`
//
// Bundles each TypeScript bench with esbuild (already installed for tsup; the SDK and driver are
// taken from source through tsconfig paths, npm packages stay external) and runs it in its own
// Node process with --expose-gc and a private TMPDIR. The driver benches spawn the driver CLI
// bundled the same way (driver/src/cli.ts, as tsup builds it, but with the SDK inlined from source),
// so no `npm run build` is needed and a concurrent rebuild of dist/ cannot pull it away mid-run;
// BENCH_DRIVER_CLI=driver/dist/cli.js runs the built package instead. Whatever a bench leaves
// behind when it fails or times out (tmpfs mounts, a spawned driver) is removed here afterwards.
import { execFile, execFileSync, spawn } from 'node:child_process';
import console from 'node:console';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';

const run = promisify(execFile);
const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);
// Under node_modules: ignored by git and eslint, and bundles still resolve the external packages.
const OUT_DIR = join(ROOT, 'node_modules', '.cache', 'spire-csi-bench');

/** name → time limit (s) and whether it spawns the driver CLI. Limits leave room for a busy machine. */
const BENCHES = {
  publish: { limitS: 420, needsDriver: true },
  scale: { limitS: 900, needsDriver: true },
  handshake: { limitS: 120, needsDriver: false },
  'rotation-load': { limitS: 180, needsDriver: false },
  'rotation-memory': { limitS: 420, needsDriver: false },
};

function parseArgs(argv) {
  const names = [];
  let nodeBin = process.execPath;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--node') nodeBin = argv[++i];
    else if (arg.startsWith('--node=')) nodeBin = arg.slice('--node='.length);
    else if (arg === '--help' || arg === '-h') {
      console.log(`usage: npm run bench [-- <${Object.keys(BENCHES).join('|')}>...] [--node <node binary>]`);
      process.exit(0);
    } else if (arg in BENCHES) names.push(arg);
    else {
      console.error(`bench: unknown bench or flag "${arg}"; benches: ${Object.keys(BENCHES).join(', ')}`);
      process.exit(2);
    }
  }
  return { names: names.length > 0 ? names : Object.keys(BENCHES), nodeBin };
}

function mountsUnder(root) {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p) => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, oct) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => p === root || p.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
}

function pidFiles(dir, depth = 3) {
  const found = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isFile() && /^driver-\d+\.pid$/.test(entry.name)) found.push(path);
    else if (entry.isDirectory() && depth > 0 && entry.name !== 'kubelet') found.push(...pidFiles(path, depth - 1));
  }
  return found;
}

/** Kills drivers a bench spawned, unmounts every tmpfs under its TMPDIR, removes the folder. */
async function cleanupAfter(benchTmp) {
  for (const file of pidFiles(benchTmp)) {
    const pid = Number(readFileSync(file, 'utf8'));
    try {
      // Only a process that is still the driver we started (same command line) is killed.
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes('cli') && cmdline.includes(benchTmp)) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const leftovers = mountsUnder(benchTmp);
  if (leftovers.length > 0) console.error(`bench: unmounting ${leftovers.length} leftover mount(s) under ${benchTmp}`);
  for (const point of leftovers) await run('umount', ['-l', point]).catch(() => undefined);
  if (mountsUnder(benchTmp).length === 0) rmSync(benchTmp, { recursive: true, force: true });
  else console.error(`bench: mounts remain under ${benchTmp}; not removing it`);
}

async function bundle(entry, outfile) {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    // One tsconfig for every file, so driver code also resolves @spire-csi/sdk to sdk/src.
    tsconfig: join(ROOT, 'tsconfig.json'),
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  return outfile;
}

function runOne(name, file, nodeBin, command) {
  const { limitS } = BENCHES[name];
  const benchTmp = mkdtempSync(join(tmpdir(), `spire-csi-bench-${name}-`));
  return new Promise((resolve) => {
    const child = spawn(nodeBin, ['--expose-gc', '--enable-source-maps', file], {
      cwd: ROOT,
      stdio: 'inherit',
      env: {
        ...process.env,
        TMPDIR: benchTmp,
        BENCH_COMMAND: command,
        BENCH_RESULTS_DIR: join(BENCH_DIR, 'results'),
        BENCH_DRIVER_CLI: process.env.BENCH_DRIVER_CLI ?? join(OUT_DIR, 'driver-cli.mjs'),
        BENCH_HEAP_PROBE: join(BENCH_DIR, 'heap-probe.mjs'),
      },
    });
    let timedOut = false;
    const term = setTimeout(() => {
      timedOut = true;
      console.error(`bench: ${name} exceeded ${limitS} s; stopping it`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 20_000).unref();
    }, limitS * 1000);
    child.on('exit', async (code, signal) => {
      clearTimeout(term);
      await cleanupAfter(benchTmp);
      resolve({ name, ok: code === 0 && !timedOut, code, signal, timedOut });
    });
  });
}

async function main() {
  const { names, nodeBin } = parseArgs(process.argv.slice(2));
  const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  const version = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim();
  console.log(`bench: ${names.join(', ')} on Node ${version}${nodeBin === process.execPath ? '' : ` (${nodeBin})`}`);

  if (names.some((n) => BENCHES[n].needsDriver)) {
    await bundle(join(ROOT, 'driver', 'src', 'cli.ts'), join(OUT_DIR, 'driver-cli.mjs'));
  }

  const outcomes = [];
  for (const name of names) {
    console.log(`\n=== ${name} ===`);
    const file = join(OUT_DIR, `${name}.mjs`);
    await bundle(join(BENCH_DIR, `${name}.ts`), file);
    const started = Date.now();
    const outcome = await runOne(name, file, nodeBin, `${command}  # ran: ${name}, node ${version}`);
    console.log(`=== ${name}: ${outcome.ok ? 'done' : 'FAILED'} in ${Math.round((Date.now() - started) / 1000)} s ===`);
    outcomes.push(outcome);
  }
  const failed = outcomes.filter((o) => !o.ok);
  if (failed.length > 0) {
    console.error(`\nbench: failed: ${failed.map((f) => `${f.name} (${f.timedOut ? 'timeout' : f.signal ?? `exit ${f.code}`})`).join(', ')}`);
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
