import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

// What a CPU without a prebuilt koffi binary (or an install that skipped the optional package)
// looks like from the driver: the import fails. Mocked in this file only, so it gets fresh modules.
vi.mock('koffi', () => {
  throw new Error('Cannot find the native Koffi module; did you build it?');
});

describe('LinuxMounter without koffi', () => {
  let base: string;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'libc-fallback-'));
  });

  afterEach(async () => {
    const { parseMountInfo } = await import('../../driver/src/mount/mountinfo.js');
    const points = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')).filter((entry) => entry.mountPoint.startsWith(`${base}/`));
    for (const entry of points.reverse()) await run('umount', ['-l', entry.mountPoint]).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });

  it('says why it falls back to the exec path', async () => {
    const { loadLibc } = await import('../../driver/src/mount/libc.js');
    const { LinuxMounter } = await import('../../driver/src/mount/mounter.js');
    const load = await loadLibc();
    expect(load.libc).toBeUndefined();
    const backend = await new LinuxMounter().backend();
    expect(backend.kind).toBe('exec');
    // vitest wraps the factory's error in its own, so only the driver's part of the reason is checked.
    expect(backend.reason).toMatch(/^the koffi FFI package cannot be loaded \(.+\)$/);
  });

  it.skipIf(!isRoot)('still mounts, finds and unmounts tmpfs through mount(8) and umount(8)', async () => {
    const { LinuxMounter } = await import('../../driver/src/mount/mounter.js');
    const mounter = new LinuxMounter();
    const target = join(base, 'target');
    await mkdir(target);
    await mounter.mountTmpfs(target, { sizeBytes: 65536, mode: 0o750, gid: 1234 });
    await mounter.mountTmpfs(target, { sizeBytes: 65536, mode: 0o750, gid: 1234 });
    expect(await mounter.isMountPoint(target)).toBe(true);
    await mounter.unmount(target);
    expect(await mounter.isMountPoint(target)).toBe(false);
    await expect(mounter.mountTmpfs(join(base, 'missing'), { sizeBytes: 65536, mode: 0o755 })).rejects.toThrow(/mounter: mounting tmpfs at .*missing failed: mount: /);
  });
});
