/**
 * Tearing down hundreds of test mounts one `umount` at a time takes longer than the test itself;
 * this unmounts them a few at a time, deepest first, before the harness's own (sequential) sweep.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mountsUnder } from '../../helpers/driver-harness.js';

const run = promisify(execFile);

export async function unmountAllUnder(root: string, concurrency = 8): Promise<void> {
  const points = await mountsUnder(root);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < points.length) {
      const point = points[next++]!;
      await run('umount', ['-l', point]).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
