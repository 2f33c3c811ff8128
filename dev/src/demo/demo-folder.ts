import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMountInfo, LinuxMounter } from '@spire-csi/driver/internal';
import { DemoError, messageOf } from './errors.js';

const MOUNTINFO = '/proc/self/mountinfo';

/** A fresh `spire-csi-demo-*` folder inside `parent`; the real path, as mountinfo will show it. */
export async function createDemoRoot(parent: string): Promise<string> {
  try {
    await mkdir(parent, { recursive: true });
    return await realpath(await mkdtemp(join(parent, 'spire-csi-demo-')));
  } catch (error) {
    throw new DemoError(
      `cannot create the demo folder in ${parent}: ${messageOf(error)}`,
      'pass a folder you can write to with --folder, e.g. --folder /tmp',
      { cause: error },
    );
  }
}

/** Mount points at or below `root`, deepest first. */
export async function mountsUnder(root: string): Promise<string[]> {
  if (!existsSync(MOUNTINFO)) return [];
  const points = parseMountInfo(await readFile(MOUNTINFO, 'utf8'))
    .map((entry) => entry.mountPoint)
    .filter((point) => point === root || point.startsWith(`${root}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * The last line of defence when unpublishing did not happen (the driver failed, a step threw):
 * nothing may stay mounted under the demo folder, or removing it would fail or hide a mount.
 */
export async function unmountLeftovers(root: string): Promise<string[]> {
  const leftovers = await mountsUnder(root);
  const mounter = new LinuxMounter({ commandTimeoutMs: 10_000 });
  for (const point of leftovers) await mounter.unmount(point);
  const remaining = await mountsUnder(root);
  if (remaining.length > 0) {
    throw new Error(`still mounted: ${remaining.join(', ')}; run \`umount ${remaining.join(' ')}\``);
  }
  return leftovers;
}

/** Removes the demo folder, or with `keep` everything in it but that one file. */
export async function removeDemoRoot(root: string, keep?: string): Promise<void> {
  if (keep === undefined) {
    await rm(root, { recursive: true, force: true });
    return;
  }
  for (const entry of await readdir(root)) {
    const path = join(root, entry);
    if (path !== keep) await rm(path, { recursive: true, force: true });
  }
}
