#!/usr/bin/env node
// `node bench/cpuprofile-top.mjs <file.cpuprofile> [count] [fnA,fnB,...]`: self time by function
// and by package/file, and the inclusive time of the named functions (their whole call trees), to
// find the hotspot of a bench step (see BENCH_CPU_PROF in BENCHMARKS.md).
import console from 'node:console';
import { readFileSync } from 'node:fs';
import process from 'node:process';

const [file, countArg, inclusiveArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/cpuprofile-top.mjs <file.cpuprofile> [count]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const count = Number(countArg ?? 25);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const deltas = profile.timeDeltas;
const selfUs = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0));
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const shortUrl = (url) => url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, 'nm:').replace(/^\/work\/main\//, '');
const fn = new Map();
const where = new Map();
for (const [id, us] of selfUs) {
  const { callFrame } = byId.get(id);
  const url = shortUrl(callFrame.url || '(native)');
  const key = `${callFrame.functionName || '(anonymous)'}  ${url}:${callFrame.lineNumber + 1}`;
  fn.set(key, (fn.get(key) ?? 0) + us);
  const bucket = url.startsWith('nm:') ? url.split('/').slice(0, url.startsWith('nm:@') ? 2 : 1).join('/') : url.startsWith('node:') ? 'node:*' : url;
  where.set(bucket, (where.get(bucket) ?? 0) + us);
}
const print = (title, map, limit = count) => {
  console.log(`\n${title} (total ${(total / 1000).toFixed(0)} ms sampled)`);
  for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((us / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
};
print('Self time by function', fn);
print('Self time by file / package', where);

if (inclusiveArg) {
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const names = inclusiveArg.split(',');
  const inclusive = new Map(names.map((n) => [n, 0]));
  for (const [id, us] of selfUs) {
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) seen.add(byId.get(at).callFrame.functionName);
    for (const name of names) if (seen.has(name)) inclusive.set(name, inclusive.get(name) + us);
  }
  print('Inclusive time of the named functions', inclusive, inclusive.size);
}
