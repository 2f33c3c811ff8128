#!/usr/bin/env node
// `node bench/heap-diff.mjs <before.heapsnapshot> <after.heapsnapshot> [count] [per]`: what grew
// between two V8 heap snapshots (e.g. the driver at 100 and at 1,000 volumes, written by
// BENCH_HEAP_SNAPSHOT), by node type and constructor name: count and self bytes, largest growth
// first. With `per` (e.g. 900, the volumes added) each row also shows bytes per added volume.
import console from 'node:console';
import { readFileSync } from 'node:fs';
import process from 'node:process';

const [beforeFile, afterFile, countArg, perArg] = process.argv.slice(2);
if (!beforeFile || !afterFile) {
  console.error('usage: node bench/heap-diff.mjs <before.heapsnapshot> <after.heapsnapshot> [count] [per]');
  process.exit(2);
}
const count = Number(countArg ?? 30);
const per = perArg === undefined ? undefined : Number(perArg);

/** Count and self size by `type:name` (strings and code grouped by type alone, their names are content). */
function tally(file) {
  const snapshot = JSON.parse(readFileSync(file, 'utf8'));
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const { nodes, strings } = snapshot;
  const out = new Map();
  let total = 0;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]];
    const size = nodes[i + sizeAt];
    total += size;
    const grouped = type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'code' || type === 'number';
    const key = grouped ? `(${type})` : `${type}:${strings[nodes[i + nameAt]]}`;
    const entry = out.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += size;
    out.set(key, entry);
  }
  return { byName: out, total };
}

const before = tally(beforeFile);
const after = tally(afterFile);
const rows = [];
for (const [name, a] of after.byName) {
  const b = before.byName.get(name) ?? { count: 0, bytes: 0 };
  rows.push({ name, count: a.count - b.count, bytes: a.bytes - b.bytes });
}
rows.sort((x, y) => y.bytes - x.bytes);
const kib = (n) => (n / 1024).toFixed(1);
console.log(`self size: ${kib(before.total)} KiB → ${kib(after.total)} KiB (${kib(after.total - before.total)} KiB)` + (per ? `, ${((after.total - before.total) / per).toFixed(0)} B per unit` : ''));
console.log(`${'KiB'.padStart(9)} ${'count'.padStart(8)}${per ? ' B/unit'.padStart(9) + ' n/unit'.padStart(8) : ''}  type:name`);
for (const row of rows.slice(0, count)) {
  const perCols = per ? `${(row.bytes / per).toFixed(0).padStart(9)}${(row.count / per).toFixed(1).padStart(8)}` : '';
  console.log(`${kib(row.bytes).padStart(9)} ${String(row.count).padStart(8)}${perCols}  ${row.name.slice(0, 100)}`);
}
