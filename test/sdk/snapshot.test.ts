import { mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { X509Svid } from '../../sdk/src/x509/svid.js';
import { SourceError } from '../../sdk/src/source/errors.js';
import { readSnapshot, type FolderSnapshot } from '../../sdk/src/source/snapshot.js';
import { CredentialFolder, credentialFiles, tempDir } from '../helpers/credential-folder.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { TestCa } from '../helpers/test-ca.js';

const all = (names: readonly string[]): readonly string[] => names;
const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function folderWithCleanup(): string {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  return dir.path;
}

async function atomicFolder(files: Record<string, string>): Promise<CredentialFolder> {
  const folder = new CredentialFolder(join(folderWithCleanup(), 'creds'), 'atomic');
  await folder.write(files);
  return folder;
}

describe('readSnapshot', () => {
  it('reads plain files directly', async () => {
    const path = folderWithCleanup();
    writeFileSync(join(path, 'a.pem'), 'A');
    writeFileSync(join(path, 'b.pem'), 'B');
    const { snapshot, value } = await readSnapshot(path, { select: (names) => names.filter((n) => n !== 'b.pem'), parse: (s) => s });
    expect(snapshot.payloadDir).toBeNull();
    expect(snapshot.attempts).toBe(1);
    expect([...value.files.keys()]).toEqual(['a.pem']);
    expect(value.files.get('a.pem')!.toString()).toBe('A');
  });

  it('reads every file through the directory ..data points to', async () => {
    const folder = await atomicFolder({ 'a.pem': 'A1', 'b.pem': 'B1' });
    await folder.write({ 'a.pem': 'A2', 'b.pem': 'B2' });
    const { snapshot } = await readSnapshot(folder.path, { select: all, parse: (s) => s });
    expect(snapshot.payloadDir).toBe(readlinkSync(join(folder.path, '..data')));
    expect(Object.fromEntries([...snapshot.files].map(([k, v]) => [k, v.toString()]))).toEqual({ 'a.pem': 'A2', 'b.pem': 'B2' });
  });

  it('follows an absolute ..data target', async () => {
    const path = folderWithCleanup();
    mkdirSync(join(path, '..payload'));
    writeFileSync(join(path, '..payload', 'a.pem'), 'A');
    symlinkSync(join(path, '..payload'), join(path, '..data'));
    const { snapshot } = await readSnapshot(path, { select: all, parse: (s) => s });
    expect(snapshot.files.get('a.pem')!.toString()).toBe('A');
  });

  it('reports a missing folder', async () => {
    const path = join(folderWithCleanup(), 'nope');
    const err = await readSnapshot(path, { select: all, parse: (s) => s }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceError);
    expect((err as SourceError).kind).toBe('missing');
    expect((err as SourceError).message).toBe(`filesource: credential folder ${path} does not exist`);
  });

  it('reports a folder that is a file', async () => {
    const path = join(folderWithCleanup(), 'file');
    writeFileSync(path, 'x');
    const err = await readSnapshot(path, { select: all, parse: (s) => s }).catch((e: unknown) => e);
    expect((err as SourceError).kind).toBe('missing');
    expect((err as SourceError).message).toMatch(/is not a directory/);
  });

  it('gives up on a dangling ..data after the bounded retries', async () => {
    const path = folderWithCleanup();
    symlinkSync('..gone', join(path, '..data'));
    const clock = new FakeClock();
    const reading = readSnapshot(path, { select: all, parse: (s) => s, maxAttempts: 3, clock }).catch((e: unknown) => e);
    // A moved payload is re-read at once: only zero-length pauses, no time passes.
    await clock.advance(0);
    const err = await reading;
    expect((err as SourceError).kind).toBe('inconsistent');
    expect((err as SourceError).message).toMatch(/after 3 attempts: the files changed while they were being read/);
  });

  it('re-reads plain files until they parse (a writer mid-update)', async () => {
    const path = folderWithCleanup();
    writeFileSync(join(path, 'cert.pem'), 'half');
    let calls = 0;
    const clock = new FakeClock();
    const reading = readSnapshot(path, {
      select: all,
      parse: (s: FolderSnapshot) => {
        calls++;
        const text = s.files.get('cert.pem')!.toString();
        if (text !== 'complete') {
          // The writer finishes after our first read.
          writeFileSync(join(path, 'cert.pem'), 'complete');
          throw new Error('half-written');
        }
        return text;
      },
      clock,
    });
    await clock.advance(0);
    expect(calls).toBe(1);
    // The default pause before re-reading plain files.
    expect(clock.pendingDelays()).toEqual([20]);
    await clock.advance(20);
    const { snapshot, value } = await reading;
    expect(value).toBe('complete');
    expect(calls).toBe(2);
    expect(snapshot.attempts).toBe(2);
  });

  it('rethrows the parse error once plain-file retries are exhausted', async () => {
    const path = folderWithCleanup();
    writeFileSync(join(path, 'cert.pem'), 'garbage');
    let calls = 0;
    const parse = (): never => {
      calls++;
      throw new Error('still garbage');
    };
    const clock = new FakeClock();
    const reading = readSnapshot(path, { select: all, parse, maxAttempts: 4, retryDelayMs: 5, clock });
    const settled = expect(reading).rejects.toThrow('still garbage');
    await clock.advance(15);
    await settled;
    expect(calls).toBe(4);
    expect(clock.pendingTimers).toBe(0);
  });

  it('stops pausing and fails with "closed" when its signal aborts', async () => {
    const path = folderWithCleanup();
    writeFileSync(join(path, 'cert.pem'), 'garbage');
    const clock = new FakeClock();
    const stop = new AbortController();
    const reading = readSnapshot(path, {
      select: all,
      parse: () => {
        throw new Error('still garbage');
      },
      clock,
      signal: stop.signal,
    }).catch((e: unknown) => e);
    await clock.advance(0);
    expect(clock.pendingTimers).toBe(1);
    stop.abort();
    const err = await reading;
    expect(err).toBeInstanceOf(SourceError);
    expect((err as SourceError).kind).toBe('closed');
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not re-read a ..data snapshot that fails to parse: its content is already consistent', async () => {
    const folder = await atomicFolder({ 'cert.pem': 'garbage' });
    let calls = 0;
    const parse = (): never => {
      calls++;
      throw new Error('bad content');
    };
    await expect(readSnapshot(folder.path, { select: all, parse })).rejects.toThrow('bad content');
    expect(calls).toBe(1);
  });
});

/**
 * The writer runs in a worker thread with synchronous fs calls so it races the reader for real
 * (not just interleaved on one event loop). Same steps as the driver: payload dir, `..data_tmp`,
 * rename over `..data`, delete the previous payload dir.
 */
const ROTATING_WRITER = `
const fs = require('node:fs');
const path = require('node:path');
const { workerData, parentPort } = require('node:worker_threads');
const { folder, payloads, rotations } = workerData;
// A 1 ms pause per rotation leaves readers room to complete reads between swaps as well.
const pause = new Int32Array(new SharedArrayBuffer(4));
let previous = fs.readlinkSync(path.join(folder, '..data'));
for (let i = 0; i < rotations; i++) {
  const files = payloads[i % payloads.length];
  const dir = '..2026_01_01_00_00_00.' + i.toString(16).padStart(8, '0');
  fs.mkdirSync(path.join(folder, dir));
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(folder, dir, name), content);
  fs.symlinkSync(dir, path.join(folder, '..data_tmp'));
  fs.renameSync(path.join(folder, '..data_tmp'), path.join(folder, '..data'));
  fs.rmSync(path.join(folder, previous), { recursive: true, force: true });
  previous = dir;
  Atomics.wait(pause, 0, 0, 1);
}
parentPort.postMessage('done');
`;

describe('readSnapshot under concurrent ..data rotation', () => {
  const payloads: Record<string, string>[] = [];

  beforeAll(async () => {
    // Distinct CA per generation, so a bundle from the wrong generation is detectable.
    for (let i = 0; i < 3; i++) {
      const ca = await TestCa.create('example.org');
      const svid = await ca.mint(`spiffe://example.org/gen-${i}`);
      payloads.push(credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem }));
    }
  });

  it('never mixes generations over 1,000 rotations', async () => {
    const folder = await atomicFolder(payloads[0]!);
    const generationOf = new Map(payloads.map((files, i) => [files['credential-bundle.pem']!, i]));
    const names = Object.keys(payloads[0]!);

    /** Null when the snapshot is one complete, matching generation; else what was wrong. */
    const check = (snapshot: FolderSnapshot): string | null => {
      const generation = generationOf.get(snapshot.files.get('credential-bundle.pem')?.toString() ?? '');
      if (generation === undefined) return 'unknown credential bundle';
      const expected = payloads[generation]!;
      for (const name of names) {
        if (snapshot.files.get(name)?.toString() !== expected[name]) return `${name} is from another generation`;
      }
      // The real parsers agree: key matches the leaf in both layouts.
      X509Svid.parseCredentialBundle(snapshot.files.get('credential-bundle.pem')!);
      X509Svid.parse(snapshot.files.get('svid.pem')!, snapshot.files.get('svid_key.pem')!);
      return null;
    };

    const worker = new Worker(ROTATING_WRITER, {
      eval: true,
      workerData: { folder: folder.path, payloads, rotations: 1000 },
    });
    let writerDone = false;
    const finished = new Promise<void>((resolve, reject) => {
      worker.once('message', () => {
        writerDone = true;
        resolve();
      });
      worker.once('error', reject);
    });

    const stats = { snapshots: 0, retried: 0, gaveUp: 0, mismatches: [] as string[] };
    const generationsSeen = new Set<number>();
    const reader = async (): Promise<void> => {
      while (!writerDone) {
        // readSnapshot reads synchronously; without a macrotask turn the writer's 'done' message
        // would never be delivered to this loop.
        await new Promise<void>((resolve) => setImmediate(resolve));
        try {
          const { snapshot, value } = await readSnapshot(folder.path, { select: all, parse: check });
          stats.snapshots++;
          if (snapshot.attempts > 1) stats.retried++;
          if (value !== null) stats.mismatches.push(value);
          else generationsSeen.add(generationOf.get(snapshot.files.get('credential-bundle.pem')!.toString())!);
        } catch (err) {
          if (err instanceof SourceError && err.kind === 'inconsistent') stats.gaveUp++;
          else stats.mismatches.push(String(err));
        }
      }
    };
    try {
      await Promise.all([finished, reader(), reader(), reader(), reader()]);
    } finally {
      await worker.terminate();
    }
    expect(stats.mismatches).toEqual([]);
    expect(stats.snapshots).toBeGreaterThan(0);
    // The writer is far faster than any real rotation; a reader may still exhaust its retries,
    // but it must fail loudly ('inconsistent'), never return a mix.
    expect(stats.snapshots + stats.gaveUp).toBeGreaterThan(0);
    // Afterwards the folder is readable and consistent.
    const final = await readSnapshot(folder.path, { select: all, parse: check });
    expect(final.value).toBeNull();
    expect(generationsSeen.size).toBeGreaterThan(0);
  });
});

describe('CredentialFolder fixture', () => {
  it('writes the driver layout: ..data swap, visible links, old payload removed', async () => {
    const folder = await atomicFolder({ 'a.pem': 'A1', 'old.pem': 'O' });
    const first = readlinkSync(join(folder.path, '..data'));
    await folder.write({ 'a.pem': 'A2' });
    const second = readlinkSync(join(folder.path, '..data'));
    expect(second).not.toBe(first);
    expect(second).toMatch(/^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]{16}$/);
    expect(readlinkSync(join(folder.path, 'a.pem'))).toBe('..data/a.pem');
    expect(readdirSync(folder.path).sort()).toEqual([second, '..data', 'a.pem'].sort());
  });
});
