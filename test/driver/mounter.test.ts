import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseMountInfo } from '../../driver/src/mount/mountinfo.js';
import { LinuxMounter, MountError, type LinuxMounterOptions } from '../../driver/src/mount/mounter.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('mounter.test.ts: skipping real tmpfs tests: they need root (uid 0) to mount');

/** Lazily detaches whatever a failed test left mounted under `root`, deepest and newest first. */
async function unmountEverythingUnder(root: string): Promise<void> {
  const points = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'))
    .filter((entry) => entry.mountPoint.startsWith(`${root}/`))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length || b.mountId - a.mountId);
  for (const entry of points) await run('umount', ['-l', entry.mountPoint]).catch(() => undefined);
}

// The same behaviour is expected whichever way the mounter reaches the kernel.
const backends: ReadonlyArray<readonly [string, LinuxMounterOptions]> = [
  ['system calls', { syscalls: 'auto' }],
  ['mount(8) and umount(8)', { syscalls: 'exec' }],
];

describe.skipIf(!isRoot).each(backends)('LinuxMounter through %s (real tmpfs)', (_name, options) => {
  const mounter = new LinuxMounter(options);
  let base: string;
  let target: string;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'mounter-'));
    target = join(base, 'with space', 'mount');
    await mkdir(target, { recursive: true });
  });

  afterEach(async () => {
    await unmountEverythingUnder(base);
    await rm(base, { recursive: true, force: true });
  });

  it('mounts a tmpfs with the requested mode and group, then unmounts it', async () => {
    expect(await mounter.isMountPoint(target)).toBe(false);
    await mounter.mountTmpfs(target, { sizeBytes: 1024 * 1024, mode: 0o750, gid: 1234 });
    expect(await mounter.isMountPoint(target)).toBe(true);
    const info = await stat(target);
    expect(info.mode & 0o7777).toBe(0o750);
    expect(info.gid).toBe(1234);
    await writeFile(join(target, 'x'), 'data');
    await mounter.unmount(target);
    expect(await mounter.isMountPoint(target)).toBe(false);
    await expect(stat(join(target, 'x'))).rejects.toThrow(/ENOENT/);
  });

  it('enforces the size limit', async () => {
    await mounter.mountTmpfs(target, { sizeBytes: 64 * 1024, mode: 0o755 });
    await expect(writeFile(join(target, 'big'), Buffer.alloc(256 * 1024))).rejects.toThrow(/ENOSPC/);
  });

  it('unmounts stacked mounts and treats "not mounted" as success', async () => {
    await mounter.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    await mounter.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    await mounter.unmount(target);
    expect(await mounter.isMountPoint(target)).toBe(false);
    await mounter.unmount(target);
    await mounter.unmount(join(base, 'does-not-exist'));
  });

  it('reports a failed mount as a MountError naming the target', async () => {
    const missing = join(base, 'missing');
    const failure = mounter.mountTmpfs(missing, { sizeBytes: 65536, mode: 0o755 });
    await expect(failure).rejects.toThrow(MountError);
    await expect(failure).rejects.toThrow(`mounting tmpfs at ${missing} failed`);
  });

  it('says a parent directory is not the mount point', async () => {
    await mounter.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    expect(await mounter.isMountPoint(join(base, 'with space'))).toBe(false);
    expect(await mounter.isMountPoint(`${target}/`)).toBe(true);
  });
});
