import { lstat, mkdir, readdir, readlink, rm, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isErrno } from '../errno.js';

export class TargetPathError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`target-path: ${message}`, options);
    this.name = 'TargetPathError';
  }
}

/**
 * The pod directory above a kubelet CSI target path
 * (`<root>/pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`), or undefined when the path does
 * not have that shape.
 */
export function podDirOf(targetPath: string): string | undefined {
  const podDir = dirname(dirname(dirname(dirname(targetPath))));
  const volumesDir = dirname(dirname(dirname(targetPath)));
  if (basename(dirname(podDir)) !== 'pods' || basename(volumesDir) !== 'volumes') return undefined;
  return podDir;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
    throw err;
  }
}

/** Whether the writer has completed at least one payload in `target`. */
export async function hasPayload(target: string): Promise<boolean> {
  try {
    await readlink(join(target, '..data'));
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'EINVAL', 'ENOTDIR')) return false;
    throw err;
  }
}

const OUR_ENTRY = /^\.\.(data|data_tmp|\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]+)$/;

/**
 * Removes the `mount` directory after it was unmounted. A symlink is unlinked, never followed. A
 * non-empty directory is only deleted when everything in it is the writer's layout; anything
 * else is not ours to delete.
 */
export async function removeMountDir(target: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(target);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  if (!stat.isDirectory()) {
    await unlink(target);
    return;
  }
  try {
    await rmdir(target);
    return;
  } catch (err) {
    if (!isErrno(err, 'ENOTEMPTY', 'EEXIST')) throw err;
  }
  for (const entry of await readdir(target)) {
    if (OUR_ENTRY.test(entry)) continue;
    const entryStat = await lstat(join(target, entry));
    const link = entryStat.isSymbolicLink() ? await readlink(join(target, entry)) : '';
    if (!link.startsWith('..data/')) {
      throw new TargetPathError(`${target} holds ${entry}, which the driver did not write; not deleting it`);
    }
  }
  // rm does not follow symlinks, so links pointing elsewhere are removed, not their targets.
  await rm(target, { recursive: true, force: true });
}

/** Creates the `mount` directory; kubelet creates its parent, so a missing parent is an error. */
export async function makeMountDir(target: string): Promise<void> {
  try {
    await mkdir(target, { mode: 0o750 });
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      throw new TargetPathError(`the parent of ${target} does not exist; kubelet creates it before NodePublishVolume`);
    }
    if (!isErrno(err, 'EEXIST')) throw err;
    const stat = await lstat(target);
    if (!stat.isDirectory()) throw new TargetPathError(`${target} exists and is not a directory`);
  }
}
