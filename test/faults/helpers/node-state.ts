/**
 * The node-level facts a fault must not corrupt: which tmpfs mounts exist, which volume records
 * the driver keeps, and what kubelet's folder tree holds.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { mountsUnder } from '../../helpers/driver-harness.js';
import type { PublishedVolume } from '../../helpers/kubelet-emulator.js';

export function recordFileOf(volumeId: string): string {
  return `${createHash('sha256').update(volumeId, 'utf8').digest('hex')}.json`;
}

/** Record files (and any leftovers such as temp files) in the driver's state folder. */
export async function recordFiles(stateDir: string): Promise<string[]> {
  try {
    return (await readdir(join(stateDir, 'volumes'))).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export interface NodeState {
  readonly mounts: string[];
  readonly records: string[];
}

export async function nodeState(root: string, stateDir: string): Promise<NodeState> {
  return { mounts: (await mountsUnder(root)).sort(), records: await recordFiles(stateDir) };
}

/** What the node must look like when exactly `published` volumes are published. */
export function expectedState(published: Iterable<PublishedVolume>): NodeState {
  const list = [...published];
  return {
    mounts: list.map((v) => v.targetPath).sort(),
    records: list.map((v) => recordFileOf(v.volumeId)).sort(),
  };
}

/** Human-readable differences; empty when equal. */
export function diffState(actual: NodeState, expected: NodeState): string[] {
  const out: string[] = [];
  const diff = (what: string, a: readonly string[], e: readonly string[]): void => {
    const extra = a.filter((x, i) => a.indexOf(x) !== i || !e.includes(x));
    const missing = e.filter((x) => !a.includes(x));
    if (extra.length > 0) out.push(`${what} leaked/duplicated: ${extra.join(', ')}`);
    if (missing.length > 0) out.push(`${what} lost: ${missing.join(', ')}`);
  };
  diff('mounts', actual.mounts, expected.mounts);
  diff('records', actual.records, expected.records);
  return out;
}

/**
 * Every path under `root` (not following links), without descending into `skip` folders (live
 * volumes whose content rotates). Used to prove a rejected request created nothing.
 */
export async function treeOf(root: string, skip: ReadonlySet<string> = new Set()): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const path = join(dir, name);
      const stat = await lstat(path).catch(() => undefined);
      if (stat === undefined) continue;
      out.push(stat.isSymbolicLink() ? `${path} -> link` : stat.isDirectory() ? `${path}/` : path);
      if (stat.isDirectory() && !skip.has(path)) await walk(path);
    }
  };
  await walk(root);
  return out.sort();
}
