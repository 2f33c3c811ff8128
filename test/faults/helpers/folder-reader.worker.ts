/**
 * One reader thread for the torn-read tests (bundled and started by reader-threads.ts): it reads a
 * credential folder back to back, the way a workload in another process would, so its reads race
 * the writer on another core instead of waiting for the writer's event loop to yield.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SourceError as FileSourceError } from '@spire-csi/sdk/source';
import { checkFolder } from './folder-check.js';
import type { ReadTally, ReaderThreadData } from './reader-tally.js';

/** Enough to diagnose; a broken writer would otherwise ship thousands of identical messages. */
const MAX_TORN_MESSAGES = 20;

const port = parentPort;
if (port === null) throw new Error('folder-reader.worker must run in a worker thread');
const { folder } = workerData as ReaderThreadData;
let stopping = false;
// `on`, not `once`: the listener keeps the port, and so this thread, alive while a read waits on
// readSnapshot's unref'd retry timer; with it gone the thread would exit (code 13) mid-read.
port.on('message', () => {
  stopping = true;
});

const tally: ReadTally = { reads: 0, torn: [], tornCount: 0, exhausted: 0 };
port.postMessage({ kind: 'started' });
while (!stopping) {
  try {
    await checkFolder(folder);
    tally.reads++;
  } catch (err) {
    // readSnapshot gave up because the writer kept swapping faster than it could read: not torn.
    if (err instanceof FileSourceError && err.kind === 'inconsistent') tally.exhausted++;
    else {
      tally.tornCount++;
      if (tally.torn.length < MAX_TORN_MESSAGES) tally.torn.push((err as Error).message);
    }
  }
  // Lets the stop message in.
  await new Promise((resolve) => setImmediate(resolve));
}
port.postMessage({ kind: 'tally', tally });
