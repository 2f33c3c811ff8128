// Preloaded into a spawned driver (node --expose-gc --import) so it can be measured from outside
// without any endpoint in the driver. On SIGUSR2 it collects garbage and writes
// process.memoryUsage() to $BENCH_HEAP_FILE. With $BENCH_CPU_PROF (a folder) it also profiles the
// CPU from the start and, on each SIGUSR2, writes the profile of the interval since the last one
// (so each bench step gets its own .cpuprofile, even when the driver is later SIGKILLed). With
// $BENCH_HEAP_SNAPSHOT (a folder) each SIGUSR2 also writes a heap snapshot after the GC.
import console from 'node:console';
import { renameSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import process from 'node:process';
import { writeHeapSnapshot } from 'node:v8';

const file = process.env.BENCH_HEAP_FILE;
const profDir = process.env.BENCH_CPU_PROF;
const snapshotDir = process.env.BENCH_HEAP_SNAPSHOT;
let snapshots = 0;
let session;
let interval = 0;

if (profDir) {
  session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
}

function dumpProfile() {
  if (!session) return;
  session.post('Profiler.stop', (err, result) => {
    if (err) console.error(`heap-probe: ${err.message}`);
    else writeFileSync(join(profDir, `driver-${process.pid}-${++interval}.cpuprofile`), JSON.stringify(result.profile));
    session.post('Profiler.start');
  });
}

if (file) {
  process.on('SIGUSR2', () => {
    dumpProfile();
    for (let i = 0; i < 3; i++) globalThis.gc?.();
    const usage = process.memoryUsage();
    if (snapshotDir) writeHeapSnapshot(join(snapshotDir, `driver-${process.pid}-${++snapshots}.heapsnapshot`));
    // Written aside and renamed, so the reader never sees a half-written file.
    writeFileSync(`${file}.tmp`, JSON.stringify({ ...usage, at: Date.now(), gc: typeof globalThis.gc === 'function' }));
    renameSync(`${file}.tmp`, file);
  });
}
