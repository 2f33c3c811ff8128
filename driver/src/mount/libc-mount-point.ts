/**
 * Is something mounted at a path? Asked before every mount and in every unmount, and for every
 * volume when the driver resumes, so the common answer must not cost a read of the whole mount
 * table: statx(2) answers in one system call; without it, device numbers settle most cases and
 * mountinfo is read only when they cannot.
 */
import { lstat, readFile, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isErrno } from '../errno.js';
import type { Libc } from './libc.js';
import { scanMountsAt } from './mountinfo.js';

export interface MountPointQuery {
  /**
   * true: answer for what the path resolves to, symlinks included (what `realpath` names).
   * false: for the final component itself, so a symlink is never a mount point (what
   * umount2(UMOUNT_NOFOLLOW) would act on).
   */
  readonly follow: boolean;
  /** statx through the FFI when loaded; undefined to use stat and mountinfo only. */
  readonly libc?: Libc | undefined;
  readonly mountInfoPath: string;
  /** Skip statx and device numbers: answer from `mountInfoPath` alone (a file other than the kernel's). */
  readonly mountInfoOnly?: boolean;
}

/**
 * A missing path, or one under something that is not a directory, is not a mount point; other
 * failures (EACCES, ELOOP, an unreadable mountinfo) reject with the underlying error.
 */
export async function probeMountPoint(path: string, query: MountPointQuery): Promise<boolean> {
  if (query.libc !== undefined && query.mountInfoOnly !== true) {
    let root: boolean | undefined;
    try {
      root = query.libc.isMountRoot(path, query.follow);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
    if (root !== undefined) return root;
  }
  if (!query.follow) {
    // Follow and no-follow differ only when the final component is a symlink, and mount(2)
    // resolves symlinks, so nothing is mounted on the link itself.
    const link = await missingIsUndefined(lstat(path));
    if (link === undefined || link.isSymbolicLink()) return false;
  }
  return portableProbe(path, query);
}

async function portableProbe(path: string, query: MountPointQuery): Promise<boolean> {
  const real = await missingIsUndefined(realpath(path));
  if (real === undefined) return false;
  if (query.mountInfoOnly !== true) {
    const [self, parent] = await Promise.all([missingIsUndefined(stat(real)), missingIsUndefined(stat(dirname(real)))]);
    // Removed since realpath: gone, so not a mount point.
    if (self === undefined || parent === undefined) return false;
    // Another device than the parent's is another filesystem, so `real` is where it is mounted
    // (a btrfs subvolume is the one exception, and kubelet never makes its volume dirs one).
    // The same device proves nothing: a bind mount of the parent's filesystem, or `/`.
    if (self.dev !== parent.dev) return true;
  }
  return scanMountsAt(await readFile(query.mountInfoPath, 'utf8'), real).length > 0;
}

async function missingIsUndefined<T>(pending: Promise<T>): Promise<T | undefined> {
  try {
    return await pending;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}
