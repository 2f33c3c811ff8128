import * as fs from 'node:fs/promises';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, unlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../helpers/fake-clock.js';
import { AtomicWriter, AtomicWriterError, type Payload, type WriterFs } from '../../driver/src/storage/atomic-writer.js';
import { inlineFs } from '../../driver/src/storage/inline-fs.js';

const PAYLOAD_DIR = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]+$/;

function payload(entries: Record<string, [string, number]>): Payload {
  return new Map(Object.entries(entries).map(([name, [data, mode]]) => [name, { data, mode }]));
}

async function visible(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => !n.startsWith('..')).sort();
}

async function payloadDirs(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => PAYLOAD_DIR.test(n));
}

describe('AtomicWriter', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atomic-writer-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the Kubernetes layout: payload dir, ..data link and visible links', async () => {
    const writer = new AtomicWriter(dir, { clock: new FakeClock(new Date('2026-07-23T10:15:42Z')) });
    const result = await writer.write(payload({ 'cert.pem': ['CERT', 0o444], 'key.pem': ['KEY', 0o400] }));
    expect(result.changed).toBe(true);
    expect(result.dir).toMatch(/^\.\.2026_07_23_10_15_42\.[0-9a-f]{16}$/);
    expect(await readlink(join(dir, '..data'))).toBe(result.dir);
    expect(await readlink(join(dir, 'cert.pem'))).toBe('..data/cert.pem');
    expect(await readlink(join(dir, 'key.pem'))).toBe('..data/key.pem');
    expect(await readFile(join(dir, 'key.pem'), 'utf8')).toBe('KEY');
    expect((await stat(join(dir, result.dir))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(dir, 'cert.pem'))).mode & 0o7777).toBe(0o444);
    expect((await stat(join(dir, 'key.pem'))).mode & 0o7777).toBe(0o400);
    expect(await readdir(dir)).not.toContain('..data_tmp');
  });

  it('applies modes exactly whatever the umask', async () => {
    const old = process.umask(0o777);
    try {
      await new AtomicWriter(dir).write(payload({ a: ['x', 0o644], b: ['y', 0o440] }));
    } finally {
      process.umask(old);
    }
    expect((await stat(join(dir, 'a'))).mode & 0o7777).toBe(0o644);
    expect((await stat(join(dir, 'b'))).mode & 0o7777).toBe(0o440);
  });

  it.skipIf(process.getuid?.() !== 0)('sets ownership on every file', async () => {
    await new AtomicWriter(dir).write(payload({ key: ['k', 0o440] }), { uid: 0, gid: 4321 });
    const info = await stat(join(dir, 'key'));
    expect([info.uid, info.gid, info.mode & 0o7777]).toEqual([0, 4321, 0o440]);
  });

  it('swaps to a new payload, removes stale links and old payload dirs', async () => {
    const writer = new AtomicWriter(dir);
    const first = await writer.write(payload({ a: ['1', 0o444], gone: ['1', 0o444] }));
    await writeFile(join(dir, 'user-file'), 'not ours');
    await symlink('/etc/hostname', join(dir, 'user-link'));
    await mkdir(join(dir, '..2020_01_01_00_00_00.deadbeef'));
    await mkdir(join(dir, '..unknown'));
    const second = await writer.write(payload({ a: ['2', 0o444], b: ['2', 0o444] }));
    expect(second.changed).toBe(true);
    expect(second.dir).not.toBe(first.dir);
    expect(await visible(dir)).toEqual(['a', 'b', 'user-file', 'user-link']);
    expect(await payloadDirs(dir)).toEqual([second.dir]);
    expect(await readdir(dir)).toContain('..unknown');
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('2');
  });

  it('skips an identical payload but restores links, modes and ownership', async () => {
    const writer = new AtomicWriter(dir);
    const first = await writer.write(payload({ a: ['same', 0o444], k: ['key', 0o400] }));
    await unlink(join(dir, 'a'));
    await chmod(join(dir, first.dir, 'k'), 0o666);
    const again = await writer.write(payload({ a: ['same', 0o444], k: [Buffer.from('key').toString(), 0o400] }));
    expect(again).toEqual({ changed: false, dir: first.dir });
    expect(await readlink(join(dir, 'a'))).toBe('..data/a');
    expect((await stat(join(dir, 'k'))).mode & 0o7777).toBe(0o400);
  });

  it('treats a changed mode set with the same bytes as identical content, and a removed name as a change', async () => {
    const writer = new AtomicWriter(dir);
    const first = await writer.write(payload({ a: ['x', 0o444], b: ['y', 0o444] }));
    const modeOnly = await writer.write(payload({ a: ['x', 0o440], b: ['y', 0o444] }));
    expect(modeOnly.dir).toBe(first.dir);
    expect((await stat(join(dir, 'a'))).mode & 0o7777).toBe(0o440);
    const fewer = await writer.write(payload({ a: ['x', 0o440] }));
    expect(fewer.changed).toBe(true);
    expect(await visible(dir)).toEqual(['a']);
  });

  it('rejects names that are not plain base names', async () => {
    const writer = new AtomicWriter(dir);
    for (const name of ['', '../x', 'a/b', '..data', '.hidden', 'x\0y', 'n'.repeat(256)]) {
      await expect(writer.write(payload({ [name]: ['x', 0o444] }))).rejects.toThrow(AtomicWriterError);
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses to replace a visible name that is a regular file', async () => {
    await writeFile(join(dir, 'a'), 'user data');
    await expect(new AtomicWriter(dir).write(payload({ a: ['x', 0o444] }))).rejects.toThrow(/not a symlink/);
    expect(await readFile(join(dir, 'a'), 'utf8')).toBe('user data');
    expect(await readdir(dir)).toEqual(['a']);
  });

  for (const failing of ['rename', 'symlink', 'open-second-file'] as const) {
    it(`leaves the current content untouched when ${failing} fails before the swap`, async () => {
      const good = new AtomicWriter(dir);
      const first = await good.write(payload({ a: ['old', 0o444], b: ['old', 0o444] }));
      let opens = 0;
      const broken: WriterFs = {
        ...fs,
        rename: async (...args: Parameters<typeof fs.rename>) => {
          if (failing === 'rename') throw Object.assign(new Error('injected rename failure'), { code: 'EIO' });
          return fs.rename(...args);
        },
        symlink: async (...args: Parameters<typeof fs.symlink>) => {
          if (failing === 'symlink') throw Object.assign(new Error('injected symlink failure'), { code: 'EIO' });
          return fs.symlink(...args);
        },
        open: async (...args: Parameters<typeof fs.open>) => {
          if (failing === 'open-second-file' && args[1] === 'wx' && ++opens === 2) throw new Error('injected open failure');
          return fs.open(...args);
        },
      };
      const writer = new AtomicWriter(dir, { fs: broken });
      await expect(writer.write(payload({ a: ['new', 0o444], b: ['new', 0o444], c: ['new', 0o444] }))).rejects.toThrow(
        /^atomic-writer: .*injected/,
      );
      expect(await readlink(join(dir, '..data'))).toBe(first.dir);
      expect(await payloadDirs(dir)).toEqual([first.dir]);
      expect(await readdir(dir)).not.toContain('..data_tmp');
      expect(await visible(dir)).toEqual(['a', 'b']);
      expect(await readFile(join(dir, 'a'), 'utf8')).toBe('old');
    });
  }

  it('never lets a reader that resolves ..data once see files of two generations', async () => {
    const writer = new AtomicWriter(dir);
    await writer.write(payload({ a: ['gen-0', 0o444], b: ['gen-0', 0o444] }));
    let done = false;
    let consistentReads = 0;
    const mismatches: string[] = [];
    const reader = async (): Promise<void> => {
      while (!done) {
        try {
          const current = await readlink(join(dir, '..data'));
          const [a, b] = await Promise.all([readFile(join(dir, current, 'a'), 'utf8'), readFile(join(dir, current, 'b'), 'utf8')]);
          if (a !== b) mismatches.push(`${a} vs ${b}`);
          else consistentReads++;
          const viaLink = await readFile(join(dir, 'a'), 'utf8');
          if (!/^gen-\d+$/.test(viaLink)) mismatches.push(`partial read ${JSON.stringify(viaLink)}`);
        } catch (err) {
          // The generation was replaced and deleted between readlink and read: retry, as the SDK does.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
    };
    const readers = [reader(), reader(), reader()];
    for (let gen = 1; gen <= 60; gen++) {
      await writer.write(payload({ a: [`gen-${gen}`, 0o444], b: [`gen-${gen}`, 0o444] }));
    }
    done = true;
    await Promise.all(readers);
    expect(mismatches).toEqual([]);
    expect(consistentReads).toBeGreaterThan(0);
    expect(await readFile(join(dir, 'b'), 'utf8')).toBe('gen-60');
    expect((await lstat(join(dir, '..data'))).isSymbolicLink()).toBe(true);
  });

  describe('for a tmpfs (synchronous calls, no fsync, deferred cleanup)', () => {
    it('writes the same layout, modes and content, and never calls fsync', async () => {
      let syncs = 0;
      const counting: WriterFs = {
        ...inlineFs,
        open: async (path, flags, mode) => {
          const handle = await inlineFs.open(path, flags, mode);
          return { ...handle, writeFile: (d) => handle.writeFile(d), chown: (u, g) => handle.chown(u, g), chmod: (m) => handle.chmod(m), close: () => handle.close(), sync: async () => void syncs++ };
        },
      };
      const writer = new AtomicWriter(dir, { fs: counting, durable: false });
      const first = await writer.write(payload({ 'cert.pem': ['CERT', 0o444], 'key.pem': ['KEY', 0o400] }));
      const second = await writer.write(payload({ 'cert.pem': ['CERT2', 0o444], 'key.pem': ['KEY2', 0o400] }));
      expect(second.changed).toBe(true);
      expect(await readlink(join(dir, '..data'))).toBe(second.dir);
      expect(await payloadDirs(dir)).toEqual([second.dir]);
      expect(await readFile(join(dir, 'key.pem'), 'utf8')).toBe('KEY2');
      expect((await stat(join(dir, 'key.pem'))).mode & 0o7777).toBe(0o400);
      expect(first.dir).not.toBe(second.dir);
      expect(syncs).toBe(0);
    });

    it('reports failures of synchronous calls as rejections with context, leaving the current content', async () => {
      const writer = new AtomicWriter(dir, { fs: inlineFs, durable: false });
      const first = await writer.write(payload({ a: ['old', 0o444] }));
      const broken: WriterFs = {
        ...inlineFs,
        symlink: async () => {
          throw Object.assign(new Error('injected symlink failure'), { code: 'EIO' });
        },
      };
      await expect(new AtomicWriter(dir, { fs: broken, durable: false }).write(payload({ a: ['new', 0o444] }))).rejects.toThrow(
        /^atomic-writer: .*injected/,
      );
      expect(await readlink(join(dir, '..data'))).toBe(first.dir);
      expect(await payloadDirs(dir)).toEqual([first.dir]);
    });

    it('hands the removal of the replaced payload dir to deferCleanup; the next write removes any leftover', async () => {
      const tasks: (() => Promise<void>)[] = [];
      const writer = new AtomicWriter(dir, { fs: inlineFs, durable: false, deferCleanup: (task) => tasks.push(task) });
      const first = await writer.write(payload({ a: ['1', 0o444] }));
      const second = await writer.write(payload({ a: ['2', 0o444] }));
      expect((await payloadDirs(dir)).sort()).toEqual([first.dir, second.dir].sort());
      expect(await readFile(join(dir, 'a'), 'utf8')).toBe('2');
      await tasks.shift()!();
      expect(await payloadDirs(dir)).toEqual([second.dir]);
      // A task that never runs (crash, shutdown): the next write's task covers that dir too.
      const third = await writer.write(payload({ a: ['3', 0o444] }));
      tasks.splice(0);
      const fourth = await writer.write(payload({ a: ['4', 0o444] }));
      expect((await payloadDirs(dir)).sort()).toEqual([second.dir, third.dir, fourth.dir].sort());
      await Promise.all(tasks.splice(0).map((task) => task()));
      expect(await payloadDirs(dir)).toEqual([fourth.dir]);
    });

    it('counts a file as unchanged when its sameAs accepts the bytes on disk', async () => {
      const ignoreStamp = (existing: Buffer, wanted: Buffer): boolean =>
        existing.toString().replace(/@\d+/, '') === wanted.toString().replace(/@\d+/, '');
      const file = (data: string): Payload => new Map([['facts', { data, mode: 0o444, sameAs: ignoreStamp }], ['cert', { data: 'C', mode: 0o444 }]]);
      const first = await new AtomicWriter(dir, { fs: inlineFs, durable: false }).write(file('serial=1@100'));
      // A new writer (a restarted driver) with only the stamp changed: nothing is rewritten.
      const same = await new AtomicWriter(dir, { fs: inlineFs, durable: false }).write(file('serial=1@200'));
      expect(same).toEqual({ changed: false, dir: first.dir });
      expect(await readFile(join(dir, 'facts'), 'utf8')).toBe('serial=1@100');
      const changed = await new AtomicWriter(dir, { fs: inlineFs, durable: false }).write(file('serial=2@300'));
      expect(changed.changed).toBe(true);
    });

    it('still detects identical content on disk after writing something else in between', async () => {
      const writer = new AtomicWriter(dir, { fs: inlineFs, durable: false });
      await writer.write(payload({ a: ['1', 0o444] }));
      const second = await writer.write(payload({ a: ['2', 0o444] }));
      // Same as the last write: compared on disk, nothing rewritten.
      expect(await writer.write(payload({ a: ['2', 0o444] }))).toEqual({ changed: false, dir: second.dir });
    });

    it('repairs a retargeted link when a new writer (a restarted driver) first writes', async () => {
      await new AtomicWriter(dir, { fs: inlineFs, durable: false }).write(payload({ a: ['1', 0o444] }));
      await unlink(join(dir, 'a'));
      await symlink('/etc/hostname', join(dir, 'a'));
      await new AtomicWriter(dir, { fs: inlineFs, durable: false }).write(payload({ a: ['1', 0o444] }));
      expect(await readlink(join(dir, 'a'))).toBe('..data/a');
    });

    it('never lets a reader that resolves ..data once see files of two generations', async () => {
      const tasks: (() => Promise<void>)[] = [];
      const writer = new AtomicWriter(dir, { fs: inlineFs, durable: false, deferCleanup: (task) => tasks.push(task) });
      await writer.write(payload({ a: ['gen-0', 0o444], b: ['gen-0', 0o444] }));
      let done = false;
      const mismatches: string[] = [];
      let consistentReads = 0;
      const reader = async (): Promise<void> => {
        while (!done) {
          try {
            const current = await readlink(join(dir, '..data'));
            const [a, b] = await Promise.all([readFile(join(dir, current, 'a'), 'utf8'), readFile(join(dir, current, 'b'), 'utf8')]);
            if (a !== b) mismatches.push(`${a} vs ${b}`);
            else consistentReads++;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
          // The writer's calls are synchronous: yield to it between reads.
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      const readers = [reader(), reader()];
      for (let gen = 1; gen <= 60; gen++) {
        await writer.write(payload({ a: [`gen-${gen}`, 0o444], b: [`gen-${gen}`, 0o444] }));
        await new Promise((resolve) => setImmediate(resolve));
        if (gen % 3 === 0) await Promise.all(tasks.splice(0).map((task) => task()));
      }
      done = true;
      await Promise.all(readers);
      await Promise.all(tasks.splice(0).map((task) => task()));
      expect(mismatches).toEqual([]);
      expect(consistentReads).toBeGreaterThan(0);
      expect((await payloadDirs(dir)).length).toBe(1);
    });
  });
});
