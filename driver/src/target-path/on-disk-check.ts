import { status } from '@grpc/grpc-js';
import { lstat, realpath } from 'node:fs/promises';
import { dirname, join, relative, isAbsolute, sep } from 'node:path';
import { CsiError } from '../csi/errors.js';

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
    throw new CsiError(
      status.FAILED_PRECONDITION,
      `kubelet root ${JSON.stringify(kubeletRoot)} cannot be resolved (${codeOf(err)}); ` +
        "check the driver's --kubelet-root and that the folder is mounted into the driver container",
    );
  }

  const entry = await lstatOrNull(targetPath);
  if (entry !== null) {
    if (entry.isSymbolicLink()) {
      throw CsiError.invalidArgument(
        `target_path ${JSON.stringify(targetPath)} is a symbolic link; refusing to publish through it`,
      );
    }
    if (!entry.isDirectory()) {
      throw CsiError.invalidArgument(`target_path ${JSON.stringify(targetPath)} exists and is not a directory`);
    }
  }

  const ancestor = await deepestExistingAncestor(dirname(targetPath));
  let realAncestor: string;
  try {
    realAncestor = await realpath(ancestor);
  } catch (err) {
    throw new CsiError(status.INTERNAL, `cannot resolve ${JSON.stringify(ancestor)} (${codeOf(err)})`);
  }
  if (!isInside(realAncestor, realRoot)) {
    throw CsiError.invalidArgument(
      `target_path ${JSON.stringify(targetPath)} resolves outside the kubelet root ${JSON.stringify(kubeletRoot)} ` +
        `(${JSON.stringify(ancestor)} -> ${JSON.stringify(realAncestor)}); refusing to follow the symbolic link`,
    );
  }
  const podsDir = join(kubeletRoot, 'pods');
  if (ancestor !== podsDir && isInside(ancestor, podsDir)) {
    const realPods = await realpath(podsDir).catch(() => join(realRoot, 'pods'));
    if (realAncestor !== join(realPods, relative(podsDir, ancestor))) {
      throw CsiError.invalidArgument(
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
    if (codeOf(err) === 'ENOENT' || codeOf(err) === 'ENOTDIR') return null;
    throw new CsiError(status.INTERNAL, `cannot inspect ${JSON.stringify(path)} (${codeOf(err)})`);
  }
}

function codeOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'unknown error';
}
