import { lstatSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';

/** statfs(2) f_type of tmpfs (linux/magic.h). */
export const TMPFS_MAGIC = 0x01021994;

/** Why a target is not (or no longer) the tmpfs the driver mounted. */
export type TmpfsCheckFailure = 'not-a-directory' | 'not-tmpfs' | 'not-a-mount-root' | 'other-mount';

export class TmpfsCheckError extends Error {
  readonly failure: TmpfsCheckFailure;

  constructor(failure: TmpfsCheckFailure, message: string) {
    super(message);
    this.name = 'TmpfsCheckError';
    this.failure = failure;
  }
}

/** What identifies one mounted tmpfs: its device number, taken right after mounting. */
export interface MountedTmpfs {
  readonly dev: number;
}

/**
 * Checks that `target` is the root of a tmpfs, without following a symlink at `target`: lstat must
 * see a real directory on another device than its parent (a mount root), and statfs must say
 * tmpfs. With `expected`, the device must also be the one recorded when the driver mounted it, so
 * another tmpfs mounted there by someone else does not count. Key material is only ever written
 * after this passes.
 */
export async function checkTmpfsRoot(target: string, expected?: MountedTmpfs): Promise<MountedTmpfs> {
  // Synchronous: three metadata calls on paths the kernel has cached cost microseconds, while
  // their threadpool round-trips cost more than the write they guard (it runs before every write
  // of every volume, so a thousand times per rotation).
  const entry = lstatSync(target);
  const parent = lstatSync(dirname(target));
  if (!entry.isDirectory()) throw new TmpfsCheckError('not-a-directory', `${target} is not a directory`);
  if (entry.dev === parent.dev) throw new TmpfsCheckError('not-a-mount-root', `${target} is not a mount point (the tmpfs is gone)`);
  // statfs follows links, but lstat just showed `target` is a directory, not a link.
  const fs = statfsSync(target);
  if (fs.type !== TMPFS_MAGIC) {
    throw new TmpfsCheckError('not-tmpfs', `${target} is not a tmpfs (filesystem type 0x${fs.type.toString(16)})`);
  }
  if (expected !== undefined && entry.dev !== expected.dev) {
    throw new TmpfsCheckError('other-mount', `${target} is another filesystem than the tmpfs the driver mounted there`);
  }
  return { dev: entry.dev };
}
