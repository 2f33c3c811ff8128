import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../driver/src/config/options.js';
import { parseDriverConfig } from '../../driver/src/config/driver-config.js';
import type { Libc } from '../../driver/src/mount/libc.js';
import { LibcError } from '../../driver/src/mount/libc-errors.js';
import { LinuxMounter, MountError, TMPFS_MOUNT_FLAGS, tmpfsMountData, tmpfsMountOptions, type TmpfsOptions } from '../../driver/src/mount/mounter.js';
import { mountsAt, parseMountInfo } from '../../driver/src/mount/mountinfo.js';
import {
  AUTO_SELINUX_CONTEXT,
  defaultSelinuxContext,
  isSelinuxLabel,
  parseSelinuxSetting,
  selinuxfsProbe,
  type SelinuxSetting,
} from '../../driver/src/mount/selinux.js';

const isRoot = process.getuid?.() === 0;
const LABEL = 'system_u:object_r:container_file_t:s0:c12,c34';
const OPTIONS: TmpfsOptions = { sizeBytes: 1024 * 1024, mode: 0o750, gid: 2000 };

/** Records every mount(2) call instead of making it; fails when told to. */
class RecordingLibc implements Libc {
  readonly mounts: { source: string; target: string; fsType: string; flags: number; data: string }[] = [];
  failWith: number | undefined;

  mount(source: string, target: string, fsType: string, flags: number, data: string): void {
    this.mounts.push({ source, target, fsType, flags, data });
    if (this.failWith !== undefined) throw new LibcError('mount', target, this.failWith);
  }

  umount2(): void {}

  isMountRoot(): boolean | undefined {
    return false;
  }
}

describe('SELinux labels', () => {
  it.each([
    ['system_u:object_r:container_file_t:s0', true],
    [LABEL, true],
    ['u:r:t:s0-s0:c0.c1023', true],
    ['u:r:t', true],
    ['u:r', false],
    ['', false],
    ['u:r:t:s0,', false],
    ['u:r:t:s0"', false],
    ['u r:t:s0', false],
    ['u:r:t,nosuid', false],
    ['u:r:t:s0\0', false],
    [`u:r:t:${'c'.repeat(1100)}`, false],
  ])('%j is a label: %s', (value, expected) => {
    expect(isSelinuxLabel(value)).toBe(expected);
  });

  it.each<[string, SelinuxSetting | RegExp]>([
    ['auto', { mode: 'auto' }],
    ['none', { mode: 'none' }],
    [AUTO_SELINUX_CONTEXT, { mode: 'label', label: AUTO_SELINUX_CONTEXT }],
    ['on', /--selinux-context "on" is neither auto, none nor an SELinux label; use auto, none, or a label such as system_u:object_r:container_file_t:s0/],
    ['u:r:t:s0,ro', /neither auto, none nor an SELinux label/],
  ])('--selinux-context %s', (value, expected) => {
    if (expected instanceof RegExp) expect(() => parseSelinuxSetting(value)).toThrow(expected);
    else expect(parseSelinuxSetting(value)).toEqual(expected);
  });

  it.each<[string, SelinuxSetting, boolean, string | undefined]>([
    ['auto on an SELinux node', { mode: 'auto' }, true, AUTO_SELINUX_CONTEXT],
    ['auto on a node without SELinux', { mode: 'auto' }, false, undefined],
    ['none on an SELinux node', { mode: 'none' }, true, undefined],
    ['a label on a node without SELinux', { mode: 'label', label: LABEL }, false, LABEL],
  ])('the default context for %s', async (_what, setting, enabled, expected) => {
    expect(await defaultSelinuxContext(setting, async () => enabled)).toBe(expected);
  });

  it('is a driver flag with an environment variable, auto by default', () => {
    const required = ['--csi-endpoint', 'unix:///csi/csi.sock', '--node-id', 'n', '--admin-socket', '/run/admin.sock'];
    expect(parseDriverConfig(required, {})?.selinuxContext).toEqual({ mode: 'auto' });
    expect(parseDriverConfig(required, { SPIRE_CSI_SELINUX_CONTEXT: 'none' })?.selinuxContext).toEqual({ mode: 'none' });
    expect(parseDriverConfig([...required, '--selinux-context', LABEL], { SPIRE_CSI_SELINUX_CONTEXT: 'none' })?.selinuxContext).toEqual({
      mode: 'label',
      label: LABEL,
    });
    expect(() => parseDriverConfig([...required, '--selinux-context', 'enforcing'], {})).toThrow(ConfigError);
  });

  describe('the selinuxfs probe', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'selinux-probe-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    const mountinfo = async (lines: string[]): Promise<string> => {
      const path = join(dir, 'mountinfo');
      await writeFile(path, `${lines.join('\n')}\n`);
      return path;
    };
    const ROOT_LINE = '22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw';

    it.each<[string, string[], boolean]>([
      ['selinuxfs at /sys/fs/selinux', [ROOT_LINE, '30 22 0:21 / /sys/fs/selinux rw,nosuid,noexec,relatime shared:5 - selinuxfs selinuxfs rw'], true],
      ['no selinuxfs', [ROOT_LINE, '25 22 0:5 / /sys rw,nosuid shared:2 - sysfs sysfs rw'], false],
      ['another filesystem at /sys/fs/selinux', [ROOT_LINE, '30 22 0:21 / /sys/fs/selinux rw - tmpfs tmpfs rw'], false],
      ['selinuxfs elsewhere', [ROOT_LINE, '30 22 0:21 / /mnt/selinux rw - selinuxfs selinuxfs rw'], false],
      ['a malformed line', ['garbage /sys/fs/selinux here'], false],
    ])('answers for %s', async (_what, lines, expected) => {
      expect(await selinuxfsProbe({ mountInfoPath: await mountinfo(lines) })()).toBe(expected);
    });

    it('says no when mountinfo cannot be read', async () => {
      expect(await selinuxfsProbe({ mountInfoPath: join(dir, 'missing') })()).toBe(false);
    });

    it.skipIf(existsSync('/sys/fs/selinux'))('finds no SELinux on this machine, so auto labels nothing', async () => {
      expect(await selinuxfsProbe()()).toBe(false);
      expect(await defaultSelinuxContext({ mode: 'auto' }, selinuxfsProbe())).toBeUndefined();
    });
  });
});

describe('tmpfs mount options with an SELinux context', () => {
  it('builds the exact data and -o strings, the label quoted', () => {
    expect(tmpfsMountData({ ...OPTIONS, context: LABEL })).toBe(`size=1048576,mode=0750,gid=2000,context="${LABEL}"`);
    expect(tmpfsMountOptions({ ...OPTIONS, context: LABEL })).toBe(`size=1048576,mode=0750,gid=2000,context="${LABEL}",nosuid,nodev,noexec`);
    expect(tmpfsMountData(OPTIONS)).toBe('size=1048576,mode=0750,gid=2000');
  });

  it('refuses a context that is not a label rather than passing it on', () => {
    expect(() => tmpfsMountData({ ...OPTIONS, context: 'u:r:t",exec' })).toThrow(MountError);
    expect(() => new LinuxMounter({ defaultContext: 'x' })).toThrow(/invalid default SELinux context/);
  });

  describe('through mount(2) (a recording libc)', () => {
    it.each<[string, string | undefined, string | undefined, string]>([
      ["kubelet's context", LABEL, undefined, `size=1048576,mode=0750,gid=2000,context="${LABEL}"`],
      ['no context and no default', undefined, undefined, 'size=1048576,mode=0750,gid=2000'],
      ['the default when kubelet sent none', undefined, AUTO_SELINUX_CONTEXT, `size=1048576,mode=0750,gid=2000,context="${AUTO_SELINUX_CONTEXT}"`],
      ["kubelet's context over the default", LABEL, AUTO_SELINUX_CONTEXT, `size=1048576,mode=0750,gid=2000,context="${LABEL}"`],
    ])('%s', async (_what, context, defaultContext, data) => {
      const libc = new RecordingLibc();
      const mounter = new LinuxMounter({ libc, ...(defaultContext === undefined ? {} : { defaultContext }) });
      await mounter.mountTmpfs('/target', { ...OPTIONS, ...(context === undefined ? {} : { context }) });
      expect(libc.mounts).toEqual([{ source: 'tmpfs', target: '/target', fsType: 'tmpfs', flags: TMPFS_MOUNT_FLAGS, data }]);
      expect(await mounter.backend()).toMatchObject({ kind: 'syscalls' });
    });

    it('explains an EINVAL for a context: the kernel has no SELinux', async () => {
      const libc = new RecordingLibc();
      libc.failWith = 22;
      const failure = new LinuxMounter({ libc }).mountTmpfs('/target', { ...OPTIONS, context: LABEL });
      await expect(failure).rejects.toThrow(MountError);
      await expect(failure).rejects.toThrow(/EINVAL.*SELinux context "system_u:object_r:container_file_t:s0:c12,c34".*--selinux-context auto or none/);
    });

    it('only takes a libc for system calls', () => {
      expect(() => new LinuxMounter({ libc: new RecordingLibc(), syscalls: 'exec' })).toThrow(/libc only applies with syscalls: 'auto'/);
    });
  });

  describe('through mount(8) (a stand-in binary)', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'mount-args-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** A `mount` that writes each argument on its own line, so the exact argv can be compared. */
    const standIn = async (): Promise<{ binary: string; argv: () => Promise<string[]> }> => {
      const binary = join(dir, 'mount');
      const out = join(dir, 'argv');
      await writeFile(binary, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > ${JSON.stringify(out)}\n`);
      await chmod(binary, 0o755);
      return { binary, argv: async () => (await readFile(out, 'utf8')).split('\n').slice(0, -1) };
    };

    it.each<[string, string | undefined, string | undefined, string]>([
      ["kubelet's context", LABEL, undefined, `size=1048576,mode=0750,gid=2000,context="${LABEL}",nosuid,nodev,noexec`],
      ['no context and no default', undefined, undefined, 'size=1048576,mode=0750,gid=2000,nosuid,nodev,noexec'],
      ['the default when kubelet sent none', undefined, AUTO_SELINUX_CONTEXT, `size=1048576,mode=0750,gid=2000,context="${AUTO_SELINUX_CONTEXT}",nosuid,nodev,noexec`],
    ])('%s', async (_what, context, defaultContext, options) => {
      const { binary, argv } = await standIn();
      const mounter = new LinuxMounter({ mountBinary: binary, ...(defaultContext === undefined ? {} : { defaultContext }) });
      await mounter.mountTmpfs('/with space/target', { ...OPTIONS, ...(context === undefined ? {} : { context }) });
      expect(await argv()).toEqual(['-t', 'tmpfs', '-o', options, 'tmpfs', '/with space/target']);
    });
  });
});

describe.skipIf(!isRoot)('a real tmpfs on this kernel', () => {
  let base: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'selinux-real-'));
  });
  afterEach(async () => {
    await new LinuxMounter().unmount(join(base, 'mount')).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });

  it.skipIf(existsSync('/sys/fs/selinux'))('gets no context from --selinux-context auto when SELinux is off', async () => {
    const defaultContext = await defaultSelinuxContext({ mode: 'auto' }, selinuxfsProbe());
    expect(defaultContext).toBeUndefined();
    const target = join(base, 'mount');
    await mkdir(target);
    await new LinuxMounter(defaultContext === undefined ? {} : { defaultContext }).mountTmpfs(target, OPTIONS);
    const [entry] = mountsAt(parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')), target);
    expect(entry?.fsType).toBe('tmpfs');
    expect(`${entry?.mountOptions},${entry?.superOptions}`).not.toContain('context');
  });
});
