import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LinuxMounter, MountError } from '../../driver/src/volume/mounter.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('mounter.test.ts: skipping real tmpfs tests: they need root (uid 0) to mount');

describe.skipIf(!isRoot)('LinuxMounter (real tmpfs)', () => {
  const mounter = new LinuxMounter();
  let base: string;
  let target: string;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'mounter-'));
    target = join(base, 'with space', 'mount');
    await mkdir(target, { recursive: true });
  });

  afterEach(async () => {
    await mounter.unmount(target).catch(() => undefined);
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

  it('reports a failed mount with the command output', async () => {
    await expect(mounter.mountTmpfs(join(base, 'missing'), { sizeBytes: 65536, mode: 0o755 })).rejects.toThrow(MountError);
  });

  it('says a parent directory is not the mount point', async () => {
    await mounter.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    expect(await mounter.isMountPoint(join(base, 'with space'))).toBe(false);
    expect(await mounter.isMountPoint(`${target}/`)).toBe(true);
  });
});
