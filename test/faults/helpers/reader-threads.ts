/**
 * Reader threads for the torn-read tests. Workloads read their folders from other processes, so a
 * reader sharing the writer's event loop tests less than it seems: it only ever sees the writer
 * between two awaits, and a synchronous writer (the driver's tmpfs path) never. Each reader here is
 * a worker thread running the same check as the in-process tests, bundled from the TypeScript
 * sources with esbuild (a vitest dependency already) because a worker cannot load .ts on Node 20.
 */
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { build } from 'esbuild';
import { addTallies, type ReadTally, type ReaderThreadData } from './reader-tally.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
// Inside the repository so the bundle's external imports (the SDK's dependencies) resolve.
const bundleDir = `${repoRoot}node_modules/.cache/spire-csi-test`;

let bundled: Promise<string> | undefined;

function bundleReader(): Promise<string> {
  bundled ??= (async () => {
    await mkdir(bundleDir, { recursive: true });
    const outfile = `${bundleDir}/folder-reader-${process.pid}.mjs`;
    await build({
      entryPoints: [fileURLToPath(new URL('./folder-reader.worker.ts', import.meta.url))],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // As bench/run.mjs bundles: the root tsconfig maps @spire-csi/sdk to its sources, and every
      // installed package stays an import, resolved from the bundle's place in the repository.
      packages: 'external',
      tsconfig: `${repoRoot}tsconfig.json`,
      logLevel: 'silent',
    });
    return outfile;
  })();
  return bundled;
}

type ReaderMessage = { kind: 'started' } | { kind: 'tally'; tally: ReadTally };

export class ReaderThreads {
  private constructor(private readonly workers: readonly Worker[]) {}

  /** Starts one reader per folder entry and resolves once every reader is reading. */
  static async start(folders: readonly string[]): Promise<ReaderThreads> {
    const file = await bundleReader();
    const workers = folders.map((folder) => new Worker(file, { workerData: { folder } satisfies ReaderThreadData }));
    const readers = new ReaderThreads(workers);
    try {
      await Promise.all(workers.map((worker) => nextMessage(worker, 'started')));
    } catch (err) {
      await Promise.all(workers.map((worker) => worker.terminate()));
      throw err;
    }
    return readers;
  }

  /** Stops every reader and sums what they saw. */
  async stop(): Promise<ReadTally> {
    const tallies = await Promise.all(
      this.workers.map(async (worker) => {
        const reply = nextMessage(worker, 'tally');
        worker.postMessage('stop');
        try {
          const message = await reply;
          return message.kind === 'tally' ? message.tally : addTallies([]);
        } finally {
          await worker.terminate();
        }
      }),
    );
    return addTallies(tallies);
  }
}

function nextMessage(worker: Worker, kind: ReaderMessage['kind']): Promise<ReaderMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ReaderMessage): void => {
      if (message.kind !== kind) return;
      cleanup();
      resolve(message);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`reader thread exited with code ${code} before sending '${kind}'`));
    };
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
