import { lstat, mkdir, readdir, readlink, realpath, rm, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { isLayoutEntry, DATA_LINK } from '@spire-csi/sdk/layout';
import { errnoCode, isErrno } from '../errno.js';

/**
 * `invalid`: the path itself is refused (a symlink, outside the kubelet root);
 * `precondition`: the node is not in the state the operation needs (no parent, foreign files);
 * `io`: the filesystem could not be inspected.
 */
export type TargetPathErrorKind = 'invalid' | 'precondition' | 'io';

export class TargetPathError extends Error {
  readonly kind: TargetPathErrorKind;

  constructor(kind: TargetPathErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TargetPathError';
    this.kind = kind;
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
    await readlink(join(target, DATA_LINK));
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'EINVAL', 'ENOTDIR')) return false;
    throw err;
  }
}

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
  const foreign = await foreignEntry(target);
  if (foreign !== undefined) {
    throw new TargetPathError('precondition', `target-path: ${target} holds ${foreign}, which the driver did not write; not deleting it`);
  }
  // rm does not follow symlinks, so links pointing elsewhere are removed, not their targets.
  await rm(target, { recursive: true, force: true });
}

/**
 * Makes sure nothing is hidden under the tmpfs about to be mounted at `target`: an empty directory
 * is left as it is; one that holds only the writer's layout (files an older driver wrote into a
 * plain directory, key material included) is emptied; anything else is refused, naming the path.
 */
export async function emptyMountDir(target: string): Promise<void> {
  const entries = await readdir(target);
  if (entries.length === 0) return;
  const foreign = await foreignEntry(target);
  if (foreign !== undefined) {
    throw new TargetPathError(
      'precondition',
      `target-path: ${target} is not empty (it holds ${foreign}, which the driver did not write); refusing to mount a tmpfs over it`,
    );
  }
  // rm does not follow symlinks, so links pointing elsewhere are removed, not their targets.
  await Promise.all(entries.map((entry) => rm(join(target, entry), { recursive: true, force: true })));
}

/** The first entry of `target` that is not the writer's layout (payload dirs, `..data`, links into it). */
async function foreignEntry(target: string): Promise<string | undefined> {
  for (const entry of await readdir(target)) {
    if (isLayoutEntry(entry)) continue;
    const entryStat = await lstat(join(target, entry));
    const link = entryStat.isSymbolicLink() ? await readlink(join(target, entry)) : '';
    if (!link.startsWith(`${DATA_LINK}/`)) return entry;
  }
  return undefined;
}

/** Creates the `mount` directory; kubelet creates its parent, so a missing parent is an error. */
export async function makeMountDir(target: string): Promise<void> {
  try {
    await mkdir(target, { mode: 0o750 });
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      throw new TargetPathError('precondition', `target-path: the parent of ${target} does not exist; kubelet creates it before NodePublishVolume`);
    }
    if (!isErrno(err, 'EEXIST')) throw err;
    const stat = await lstat(target);
    if (!stat.isDirectory()) throw new TargetPathError('precondition', `target-path: ${target} exists and is not a directory`);
  }
}

/**
 * The on-disk half of target-path validation (the lexical half is parseTargetPath): the deepest
 * existing ancestor of the target, symlinks resolved, must still lie inside the real kubelet root,
 * and the `mount` entry itself, when it exists, must be a real directory, not a symlink, so the
 * tmpfs can never be mounted (nor files written) somewhere a symlink points at.
 *
 * Below `<root>/pods` kubelet only ever creates real directories, so a symlink there is refused
 * even when it stays inside the root: one pointing into another pod's volume would otherwise let
 * a request publish into, and on cleanup unmount, that pod's tmpfs.
 *
 * Expects a path already accepted by parseTargetPath.
 */
export async function checkTargetPathOnDisk(targetPath: string, kubeletRoot: string): Promise<void> {
  let realRoot: string;
  try {
    realRoot = await realpath(kubeletRoot);
  } catch (err) {
    throw new TargetPathError(
      'precondition',
      `kubelet root ${JSON.stringify(kubeletRoot)} cannot be resolved (${errnoCode(err) ?? 'unknown error'}); ` +
        "check the driver's --kubelet-root and that the folder is mounted into the driver container",
    );
  }

  const entry = await lstatOrNull(targetPath);
  if (entry !== null) {
    if (entry.isSymbolicLink()) {
      throw new TargetPathError('invalid', 
        `target_path ${JSON.stringify(targetPath)} is a symbolic link; refusing to publish through it`,
      );
    }
    if (!entry.isDirectory()) {
      throw new TargetPathError('invalid', `target_path ${JSON.stringify(targetPath)} exists and is not a directory`);
    }
  }

  const ancestor = await deepestExistingAncestor(dirname(targetPath));
  let realAncestor: string;
  try {
    realAncestor = await realpath(ancestor);
  } catch (err) {
    throw new TargetPathError('io', `cannot resolve ${JSON.stringify(ancestor)} (${errnoCode(err) ?? 'unknown error'})`);
  }
  if (!isInside(realAncestor, realRoot)) {
    throw new TargetPathError('invalid', 
      `target_path ${JSON.stringify(targetPath)} resolves outside the kubelet root ${JSON.stringify(kubeletRoot)} ` +
        `(${JSON.stringify(ancestor)} -> ${JSON.stringify(realAncestor)}); refusing to follow the symbolic link`,
    );
  }
  const podsDir = join(kubeletRoot, 'pods');
  if (ancestor !== podsDir && isInside(ancestor, podsDir)) {
    const realPods = await realpath(podsDir).catch(() => join(realRoot, 'pods'));
    if (realAncestor !== join(realPods, relative(podsDir, ancestor))) {
      throw new TargetPathError('invalid', 
        `target_path ${JSON.stringify(targetPath)} goes through a symbolic link below ${JSON.stringify(podsDir)} ` +
          `(${JSON.stringify(ancestor)} -> ${JSON.stringify(realAncestor)}); kubelet never creates one there, refusing to follow it`,
      );
    }
  }
}

async function deepestExistingAncestor(path: string): Promise<string> {
  let current = path;
  for (;;) {
    if ((await lstatOrNull(current)) !== null) return current;
    const parent = dirname(current);
    if (parent === current) return current;
    current = parent;
  }
}

function isInside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${sep}`));
}

async function lstatOrNull(path: string): Promise<Awaited<ReturnType<typeof lstat>> | null> {
  try {
    return await lstat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null;
    throw new TargetPathError('io', `cannot inspect ${JSON.stringify(path)} (${errnoCode(err) ?? 'unknown error'})`);
  }
}
