import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile, type FileHandle } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeErrno, LibcError } from '../../driver/src/mount/libc-errors.js';
import { loadLibc, UMOUNT_NOFOLLOW } from '../../driver/src/mount/libc.js';
import { parseMountInfo, scanMountsAt, type MountInfoEntry } from '../../driver/src/mount/mountinfo.js';
import { LinuxMounter, MountError } from '../../driver/src/mount/mounter.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('libc-mount.test.ts: skipping real mount tests: they need root (uid 0) to mount');

function kernelAtLeast(major: number, minor: number): boolean {
  const [have = 0, haveMinor = 0] = release().split('.').map((part) => Number.parseInt(part, 10));
  return have > major || (have === major && haveMinor >= minor);
}

async function mountsAt(path: string): Promise<MountInfoEntry[]> {
  return scanMountsAt(await readFile('/proc/self/mountinfo', 'utf8'), path);
}

/** Lazily detaches whatever a failed test left mounted under `root`, deepest and newest first. */
async function unmountEverythingUnder(root: string): Promise<void> {
  const points = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'))
    .filter((entry) => entry.mountPoint.startsWith(`${root}/`))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length || b.mountId - a.mountId);
  for (const entry of points) await run('umount', ['-l', entry.mountPoint]).catch(() => undefined);
}

describe('errno names', () => {
  it("uses libuv's names and words, and survives numbers it does not know", () => {
    expect(describeErrno(2)).toEqual({ code: 'ENOENT', description: 'no such file or directory' });
    expect(describeErrno(4000)).toEqual({ code: 'E4000', description: 'errno 4000' });
    const error = new LibcError('umount2', '/a b', 16);
    expect(error).toMatchObject({ code: 'EBUSY', errno: 16, syscall: 'umount2', path: '/a b' });
    expect(error.message).toBe('umount2 "/a b": EBUSY (resource busy or locked): the mount is in use: a process has a file open or its working directory inside it');
  });
});

describe('LinuxMounter options', () => {
  it('refuses binaries together with system calls', () => {
    expect(() => new LinuxMounter({ syscalls: 'auto', mountBinary: '/bin/mount' })).toThrow(/mounter: mountBinary and umountBinary only apply with syscalls: 'exec'/);
  });

  it('takes the exec path when binaries are named or exec is asked for', async () => {
    expect(await new LinuxMounter({ umountBinary: '/bin/umount' }).backend()).toMatchObject({ kind: 'exec' });
    expect(await new LinuxMounter({ syscalls: 'exec' }).backend()).toMatchObject({ kind: 'exec' });
  });

  it('refuses paths with a NUL byte before they reach the kernel or a command line', async () => {
    for (const mounter of [new LinuxMounter(), new LinuxMounter({ syscalls: 'exec' })]) {
      await expect(mounter.mountTmpfs('/tmp/a\0b', { sizeBytes: 4096, mode: 0o755 })).rejects.toThrow(/mounter: path "\/tmp\/a\\u0000b" contains a NUL byte/);
      await expect(mounter.unmount('/tmp/a\0b')).rejects.toThrow(MountError);
      await expect(mounter.isMountPoint('/tmp/a\0b')).rejects.toThrow(MountError);
    }
  });
});

describe.skipIf(!isRoot)('mount(2) and umount2(2) through koffi (real mounts)', () => {
  const syscalls = new LinuxMounter();
  const exec = new LinuxMounter({ syscalls: 'exec' });
  let base: string;
  let target: string;
  const held: FileHandle[] = [];

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'libc-mount-'));
    target = join(base, 'target');
    await mkdir(target);
  });

  afterEach(async () => {
    for (const handle of held.splice(0)) await handle.close().catch(() => undefined);
    await unmountEverythingUnder(base);
    await rm(base, { recursive: true, force: true });
  });

  it('is what the default mounter uses on this machine', async () => {
    const load = await loadLibc();
    expect(load.libc === undefined ? load.reason : 'loaded').toBe('loaded');
    expect(await syscalls.backend()).toMatchObject({ kind: 'syscalls' });
  });

  it.skipIf(!kernelAtLeast(5, 8))('answers mount point questions with statx alone on Linux 5.8+', async () => {
    const { libc } = await loadLibc();
    await syscalls.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    // Booleans, not undefined: no fallback to stat and mountinfo was needed.
    expect(libc?.isMountRoot(target, true)).toBe(true);
    expect(libc?.isMountRoot(base, true)).toBe(false);
    expect(() => libc?.isMountRoot(join(base, 'missing'), true)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'statx' }));
  });

  it('mounts with exactly the options mount(8) gives', async () => {
    const other = join(base, 'by-mount8');
    await mkdir(other);
    const options = { sizeBytes: 1024 * 1024, mode: 0o750, gid: 1234 };
    await syscalls.mountTmpfs(target, options);
    await exec.mountTmpfs(other, options);
    const [mine] = await mountsAt(target);
    const [theirs] = await mountsAt(other);
    expect(mine).toBeDefined();
    const fields = (entry: MountInfoEntry | undefined) => ({
      fsType: entry?.fsType,
      source: entry?.source,
      mountOptions: entry?.mountOptions,
      superOptions: entry?.superOptions,
    });
    expect(fields(mine)).toEqual(fields(theirs));
    expect(mine?.mountOptions.split(',')).toEqual(expect.arrayContaining(['rw', 'nosuid', 'nodev', 'noexec']));
    expect(mine?.superOptions.split(',')).toEqual(expect.arrayContaining(['size=1024k', 'mode=750', 'gid=1234']));
  });

  it('pops every stacked mount, then succeeds on what is not mounted', async () => {
    for (let i = 0; i < 3; i++) await syscalls.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    expect(await mountsAt(target)).toHaveLength(3);
    await syscalls.unmount(target);
    expect(await mountsAt(target)).toHaveLength(0);
    await syscalls.unmount(target);
    await syscalls.unmount(join(base, 'missing'));
    await writeFile(join(base, 'file'), '');
    await syscalls.unmount(join(base, 'file', 'below-a-file'));
  });

  it('names the errno and the path when mount fails', async () => {
    const missing = join(base, 'missing', 'mount');
    const failure = syscalls.mountTmpfs(missing, { sizeBytes: 65536, mode: 0o755 });
    await expect(failure).rejects.toThrow(
      `mounter: mounting tmpfs at ${missing} failed: mount(2) returned ENOENT (no such file or directory): the target directory or one of its parents does not exist`,
    );
    await expect(failure).rejects.toMatchObject({ cause: { code: 'ENOENT', syscall: 'mount', path: missing } });
    await writeFile(join(base, 'file'), '');
    await expect(syscalls.mountTmpfs(join(base, 'file', 'mount'), { sizeBytes: 65536, mode: 0o755 })).rejects.toThrow(/mount\(2\) returned ENOTDIR/);
  });

  it('names EBUSY when the mount is in use, and unmounts once it is not', async () => {
    await syscalls.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 });
    held.push(await open(join(target, 'open-file'), 'w'));
    await expect(syscalls.unmount(target)).rejects.toThrow(`mounter: unmounting ${target} failed: umount2(2) returned EBUSY`);
    expect(await syscalls.isMountPoint(target)).toBe(true);
    await held.pop()?.close();
    await syscalls.unmount(target);
    expect(await syscalls.isMountPoint(target)).toBe(false);
  });

  it('does not follow a symlink swapped in at the target when unmounting', async () => {
    const elsewhere = join(base, 'elsewhere');
    await mkdir(elsewhere);
    await syscalls.mountTmpfs(elsewhere, { sizeBytes: 65536, mode: 0o755 });
    const link = join(base, 'link');
    await symlink(elsewhere, link);
    await syscalls.unmount(link);
    expect(await mountsAt(elsewhere)).toHaveLength(1);
    // isMountPoint keeps resolving symlinks as it always did: the link leads to a mount point.
    expect(await syscalls.isMountPoint(link)).toBe(true);
    // Should the swap land between the check and the call, the kernel itself refuses to follow.
    const { libc } = await loadLibc();
    expect(() => libc?.umount2(link, UMOUNT_NOFOLLOW)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'umount2' }));
    expect(await mountsAt(elsewhere)).toHaveLength(1);
  });

  it('still mounts through mount(8) when the exec path is asked for', async () => {
    await exec.mountTmpfs(target, { sizeBytes: 65536, mode: 0o700 });
    expect(await mountsAt(target)).toHaveLength(1);
    await exec.unmount(target);
    expect(await mountsAt(target)).toHaveLength(0);
    const broken = new LinuxMounter({ mountBinary: join(base, 'no-such-mount') });
    await expect(broken.mountTmpfs(target, { sizeBytes: 65536, mode: 0o755 })).rejects.toThrow(/mounting tmpfs at .* failed: .*ENOENT/);
  });
});

// statx for the default mounter; device numbers, then mountinfo, for the exec path (the same code
// runs when statx or its mount-root bit is missing), and mountinfo alone for a custom mountinfo.
describe.skipIf(!isRoot).each([
  ['statx', new LinuxMounter()],
  ['stat and mountinfo', new LinuxMounter({ syscalls: 'exec' })],
] as const)('isMountPoint through %s (real mounts)', (_name, mounter) => {
  let base: string;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'libc-probe-'));
  });

  afterEach(async () => {
    await unmountEverythingUnder(base);
    await rm(base, { recursive: true, force: true });
  });

  it('answers for mounts, plain folders, missing paths and paths below files', async () => {
    const mounted = join(base, 'mounted');
    const plain = join(base, 'plain');
    await mkdir(mounted);
    await mkdir(plain);
    await writeFile(join(base, 'file'), '');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mounted]);
    await mkdir(join(mounted, 'inside'));
    expect(await mounter.isMountPoint(mounted)).toBe(true);
    expect(await mounter.isMountPoint(`${mounted}/`)).toBe(true);
    expect(await mounter.isMountPoint(join(mounted, 'inside'))).toBe(false);
    expect(await mounter.isMountPoint(plain)).toBe(false);
    expect(await mounter.isMountPoint(base)).toBe(false);
    expect(await mounter.isMountPoint(join(base, 'missing'))).toBe(false);
    expect(await mounter.isMountPoint(join(base, 'file'))).toBe(false);
    expect(await mounter.isMountPoint(join(base, 'file', 'below'))).toBe(false);
    expect(await mounter.isMountPoint('/')).toBe(true);
    await symlink(mounted, join(base, 'link'));
    expect(await mounter.isMountPoint(join(base, 'link'))).toBe(true);
  });

  it('sees a bind mount of the same filesystem, where device numbers do not differ', async () => {
    const source = join(base, 'source');
    const bound = join(base, 'bound');
    await mkdir(source);
    await mkdir(bound);
    await run('mount', ['--bind', source, bound]);
    // The point of the case: the fallback cannot tell from device numbers and must read mountinfo.
    expect((await stat(bound)).dev).toBe((await stat(base)).dev);
    expect(await mounter.isMountPoint(bound)).toBe(true);
    expect(await mounter.isMountPoint(source)).toBe(false);
  });

  it('handles names the kernel escapes in mountinfo', async () => {
    const odd = join(base, 'a b\tc\\134d');
    await mkdir(odd);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', odd]);
    expect(await mounter.isMountPoint(odd)).toBe(true);
    expect(await mounter.isMountPoint(join(base, 'a b\tc\\'))).toBe(false);
  });
});

describe('isMountPoint with a mountinfo file of its own', () => {
  it('answers from that file alone, as it always did', async () => {
    const base = await mkdtemp(join(tmpdir(), 'libc-fake-'));
    try {
      const listed = join(base, 'listed');
      await mkdir(listed);
      await mkdir(join(base, 'plain'));
      const mountInfoPath = join(base, 'mountinfo');
      await writeFile(mountInfoPath, `22 1 8:1 / / rw - ext4 /dev/sda1 rw\n41 22 0:38 / ${listed} rw - tmpfs tmpfs rw\n`);
      const mounter = new LinuxMounter({ mountInfoPath });
      expect(await mounter.isMountPoint(listed)).toBe(true);
      expect(await mounter.isMountPoint(join(base, 'plain'))).toBe(false);
      expect(await mounter.isMountPoint(join(base, 'missing'))).toBe(false);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});
