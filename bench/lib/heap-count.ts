/**
 * Live-object counts by constructor name from a V8 heap snapshot of this process. Heap totals
 * also move with JIT code and its metadata; counting the objects a leak would consist of
 * (SVIDs, bundles, certificates, secure contexts, timers, watchers) separates the two.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { getHeapSnapshot } from 'node:v8';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export interface HeapCounts {
  /** Instances per requested constructor name. */
  readonly objects: Record<string, number>;
  /** Bytes held by nodes of type `code` (JIT code and its deopt/relocation metadata). */
  readonly codeBytes: number;
  readonly totalBytes: number;
  /** Count and self size of every node, by `type:name`: diffing two of these names what grew. */
  readonly byName: ReadonlyMap<string, { count: number; bytes: number }>;
}

/** The entries of `after` that grew most against `before`, by bytes. */
export function topGrowth(before: HeapCounts, after: HeapCounts, count: number): { name: string; count: number; bytes: number }[] {
  const out: { name: string; count: number; bytes: number }[] = [];
  for (const [name, a] of after.byName) {
    const b = before.byName.get(name) ?? { count: 0, bytes: 0 };
    out.push({ name, count: a.count - b.count, bytes: a.bytes - b.bytes });
  }
  return out.sort((x, y) => y.bytes - x.bytes).slice(0, count);
}

export async function countObjects(names: readonly string[]): Promise<HeapCounts> {
  const chunks: Buffer[] = [];
  for await (const chunk of getHeapSnapshot()) chunks.push(chunk as Buffer);
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const stride = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const types = snap.snapshot.meta.node_types[0];
  const wanted = new Set(names);
  const objects: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  let codeBytes = 0;
  let totalBytes = 0;
  const byName = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += stride) {
    const type = types[snap.nodes[i + typeAt]!];
    const size = snap.nodes[i + sizeAt]!;
    totalBytes += size;
    if (type === 'code') codeBytes += size;
    // Bundlers rename classes to avoid collisions (`_X509Svid`, `X509Svid2`); count them as the original.
    const name = snap.strings[snap.nodes[i + nameAt]!]!.replace(/^_+/, '').replace(/\d+$/, '');
    // Strings are keyed by type alone: their names are their contents.
    const key = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? `${type}` : `${type}:${name.slice(0, 60)}`;
    const agg = byName.get(key) ?? { count: 0, bytes: 0 };
    agg.count++;
    agg.bytes += size;
    byName.set(key, agg);
    if (type !== 'object' && type !== 'native') continue;
    if (wanted.has(name)) objects[name]!++;
  }
  return { objects, codeBytes, totalBytes, byName };
}

/**
 * Moves `byName` out to `file`: a baseline kept for a later diff would otherwise hold a Map entry
 * per V8 type:name (a few MiB) in the very heap being measured. restoreByName brings it back.
 */
export async function parkByName(counts: HeapCounts, file: string): Promise<HeapCounts> {
  await writeFile(file, JSON.stringify([...counts.byName]));
  return { ...counts, byName: new Map() };
}

export async function restoreByName(counts: HeapCounts, file: string): Promise<HeapCounts> {
  const entries = JSON.parse(await readFile(file, 'utf8')) as [string, { count: number; bytes: number }][];
  return { ...counts, byName: new Map(entries) };
}
