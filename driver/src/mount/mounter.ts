import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LibcError, loadLibc, MS_NODEV, MS_NOEXEC, MS_NOSUID, UMOUNT_NOFOLLOW, type Libc } from './libc.js';
import { probeMountPoint } from './libc-mount-point.js';
import { isSelinuxLabel } from './selinux.js';

const execFileAsync = promisify(execFile);

const DEFAULT_MOUNTINFO = '/proc/self/mountinfo';

/** Small on purpose: a credential folder is a few KiB, and tmpfs pages count against the pod's node. */
export const DEFAULT_TMPFS_SIZE_BYTES = 1024 * 1024;

export interface TmpfsOptions {
  readonly sizeBytes: number;
  /** Mode of the tmpfs root, e.g. 0o755, or 0o750 with `gid` so only that group may enter. */
  readonly mode: number;
  readonly gid?: number;
  /** SELinux label for every file of the tmpfs (`context=`); the mounter's default when absent. */
  readonly context?: string;
}

/** The mount operations the volume manager needs; tests and other platforms supply their own. */
export interface Mounter {
  mountTmpfs(target: string, options: TmpfsOptions): Promise<void>;
  /** Succeeds when nothing is mounted at `target` (or it does not exist). */
  unmount(target: string): Promise<void>;
  isMountPoint(path: string): Promise<boolean>;
}

export class MountError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`mounter: ${message}`, options);
    this.name = 'MountError';
  }
}

/**
 * 'auto': mount(2), umount2(2) and statx(2) in-process through koffi when it loads, the exec
 * path otherwise. 'exec': the util-linux binaries, and stat plus mountinfo to find mounts.
 */
export type MountSyscalls = 'auto' | 'exec';

export interface LinuxMounterOptions {
  /** Default 'auto', or 'exec' when `mountBinary` or `umountBinary` is set. */
  readonly syscalls?: MountSyscalls;
  /** Binaries for the exec path; setting either one selects it. */
  readonly mountBinary?: string;
  readonly umountBinary?: string;
  /** When set, `isMountPoint` answers from this file alone rather than asking the kernel directly. */
  readonly mountInfoPath?: string;
  /** Limit for each exec'd command; system calls do not take one. */
  readonly commandTimeoutMs?: number;
  /**
   * SELinux label for a tmpfs mounted without `options.context` (the driver's --selinux-context,
   * resolved at start); none when undefined.
   */
  readonly defaultContext?: string;
  /** The system calls to use instead of koffi's binding (tests); implies syscalls 'auto'. */
  readonly libc?: Libc;
}

/** How a `LinuxMounter` reaches the kernel, for the startup log. */
export interface MountBackend {
  readonly kind: 'syscalls' | 'exec';
  readonly reason: string;
}

/** mount(2) flags matching the `nosuid,nodev,noexec` of the exec path. */
export const TMPFS_MOUNT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC;

/** The tmpfs-specific part of the options: the `data` argument of mount(2). */
export function tmpfsMountData(options: TmpfsOptions): string {
  if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes <= 0) {
    throw new MountError(`tmpfs size must be a positive integer of bytes, got ${options.sizeBytes}`);
  }
  if (!Number.isInteger(options.mode) || options.mode < 0 || options.mode > 0o7777) {
    throw new MountError(`tmpfs mode must be an octal permission value, got ${options.mode}`);
  }
  const parts = [`size=${options.sizeBytes}`, `mode=${options.mode.toString(8).padStart(4, '0')}`];
  if (options.gid !== undefined) {
    if (!Number.isInteger(options.gid) || options.gid < 0) throw new MountError(`invalid gid ${options.gid}`);
    parts.push(`gid=${options.gid}`);
  }
  if (options.context !== undefined) {
    if (!isSelinuxLabel(options.context)) throw new MountError(`invalid SELinux context ${JSON.stringify(options.context)}`);
    // Quoted, as kubelet writes it: the level's category list holds commas, and both the kernel
    // (selinux_sb_eat_lsm_opts) and libmount keep a quoted value together.
    parts.push(`context="${options.context}"`);
  }
  return parts.join(',');
}

/** Builds the `-o` value; exported so the exact option set is tested without mounting. */
export function tmpfsMountOptions(options: TmpfsOptions): string {
  // Credentials never need to be executed or to act as devices or setuid programs.
  return `${tmpfsMountData(options)},nosuid,nodev,noexec`;
}

/**
 * Mounts through system calls when it can (see libc.ts), else with the util-linux binaries,
 * called without a shell so paths are never interpreted.
 */
export class LinuxMounter implements Mounter {
  private readonly syscalls: MountSyscalls;
  private readonly mountBinary: string;
  private readonly umountBinary: string;
  private readonly mountInfoPath: string;
  private readonly mountInfoOnly: boolean;
  private readonly timeoutMs: number;
  private readonly defaultContext: string | undefined;
  private readonly injectedLibc: Libc | undefined;

  constructor(options: LinuxMounterOptions = {}) {
    const binaries = options.mountBinary !== undefined || options.umountBinary !== undefined;
    if (binaries && options.syscalls === 'auto') {
      throw new MountError("mountBinary and umountBinary only apply with syscalls: 'exec'");
    }
    if (options.libc !== undefined && (binaries || options.syscalls === 'exec')) {
      throw new MountError("libc only applies with syscalls: 'auto'");
    }
    if (options.defaultContext !== undefined && !isSelinuxLabel(options.defaultContext)) {
      throw new MountError(`invalid default SELinux context ${JSON.stringify(options.defaultContext)}`);
    }
    this.defaultContext = options.defaultContext;
    this.injectedLibc = options.libc;
    this.syscalls = options.syscalls ?? (binaries ? 'exec' : 'auto');
    this.mountBinary = options.mountBinary ?? 'mount';
    this.umountBinary = options.umountBinary ?? 'umount';
    this.mountInfoPath = options.mountInfoPath ?? DEFAULT_MOUNTINFO;
    this.mountInfoOnly = options.mountInfoPath !== undefined && options.mountInfoPath !== DEFAULT_MOUNTINFO;
    this.timeoutMs = options.commandTimeoutMs ?? 30_000;
  }

  /** Which path the calls take, and why; loads the FFI binding if that has not happened yet. */
  async backend(): Promise<MountBackend> {
    if (this.syscalls === 'exec') return { kind: 'exec', reason: "syscalls: 'exec' was asked for" };
    if (this.injectedLibc !== undefined) return { kind: 'syscalls', reason: 'system calls through the given libc' };
    const load = await loadLibc();
    return load.libc !== undefined
      ? { kind: 'syscalls', reason: 'mount(2), umount2(2) and statx(2) through koffi' }
      : { kind: 'exec', reason: load.reason };
  }

  async mountTmpfs(target: string, requested: TmpfsOptions): Promise<void> {
    checkPath(target);
    const options = this.withContext(requested);
    const libc = await this.libc();
    if (libc === undefined) return this.execMount(target, options);
    const data = tmpfsMountData(options);
    try {
      libc.mount('tmpfs', target, 'tmpfs', TMPFS_MOUNT_FLAGS, data);
    } catch (err) {
      // mount(8) drops an SELinux option on a kernel without SELinux; mount(2) refuses it.
      const selinux =
        options.context !== undefined && err instanceof LibcError && err.code === 'EINVAL'
          ? `; the options carry the SELinux context ${JSON.stringify(options.context)}, which a kernel without SELinux enabled refuses ` +
            '(on a node without SELinux, run the driver with --selinux-context auto or none)'
          : '';
      throw new MountError(`mounting tmpfs at ${target} failed: ${syscallFailure(err)}${selinux}`, { cause: err });
    }
  }

  async unmount(target: string): Promise<void> {
    checkPath(target);
    const libc = await this.libc();
    if (libc === undefined) return this.execUnmount(target);
    // Loops because mounts can be stacked (a crashed publish retried); each umount pops one.
    // UMOUNT_NOFOLLOW and a no-follow check: a symlink swapped in at the target must not steer
    // the unmount to wherever it points; nothing is mounted on the link itself, so that is done.
    for (let attempt = 0; attempt < 8; attempt++) {
      if (!(await this.probe(target, false, libc))) return;
      try {
        libc.umount2(target, UMOUNT_NOFOLLOW);
      } catch (err) {
        // EINVAL or ENOENT after a positive check: unmounted meanwhile, which is what was wanted.
        if (!(await this.probe(target, false, libc))) return;
        throw new MountError(`unmounting ${target} failed: ${syscallFailure(err)}`, { cause: err });
      }
    }
    throw new MountError(`${target} is still a mount point after 8 unmounts`);
  }

  /** Symlinks in `path` are resolved first: true when something is mounted where it leads. */
  async isMountPoint(path: string): Promise<boolean> {
    checkPath(path);
    return this.probe(path, true, await this.libc());
  }

  private async probe(path: string, follow: boolean, libc: Libc | undefined): Promise<boolean> {
    try {
      return await probeMountPoint(path, { follow, libc, mountInfoPath: this.mountInfoPath, mountInfoOnly: this.mountInfoOnly });
    } catch (err) {
      throw new MountError(`cannot resolve ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async libc(): Promise<Libc | undefined> {
    if (this.syscalls === 'exec') return undefined;
    return this.injectedLibc ?? (await loadLibc()).libc;
  }

  /** kubelet's label wins: with one, kubelet does not relabel the volume itself. */
  private withContext(options: TmpfsOptions): TmpfsOptions {
    if (options.context !== undefined || this.defaultContext === undefined) return options;
    return { ...options, context: this.defaultContext };
  }

  private async execMount(target: string, options: TmpfsOptions): Promise<void> {
    const args = ['-t', 'tmpfs', '-o', tmpfsMountOptions(options), 'tmpfs', target];
    try {
      await execFileAsync(this.mountBinary, args, { timeout: this.timeoutMs });
    } catch (err) {
      throw new MountError(`mounting tmpfs at ${target} failed: ${commandFailure(err)}`, { cause: err });
    }
  }

  private async execUnmount(target: string): Promise<void> {
    // Loops because mounts can be stacked (a crashed publish retried); each umount pops one.
    for (let attempt = 0; attempt < 8; attempt++) {
      if (!(await this.isMountPoint(target))) return;
      try {
        await execFileAsync(this.umountBinary, [target], { timeout: this.timeoutMs });
      } catch (err) {
        if (!(await this.isMountPoint(target))) return;
        throw new MountError(`unmounting ${target} failed: ${commandFailure(err)}`, { cause: err });
      }
    }
    throw new MountError(`${target} is still a mount point after 8 unmounts`);
  }
}

/** Paths reach the kernel as C strings, which end at the first NUL: refuse rather than act on a shorter path. */
function checkPath(path: string): void {
  if (path.includes('\0')) throw new MountError(`path ${JSON.stringify(path)} contains a NUL byte`);
}

function syscallFailure(err: unknown): string {
  if (err instanceof LibcError) return `${err.syscall}(2) returned ${err.detail}`;
  return err instanceof Error ? err.message : String(err);
}

function commandFailure(err: unknown): string {
  const e = err as { stderr?: string; message?: string; code?: unknown };
  const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
  return stderr !== '' ? stderr : (e.message ?? String(err));
}
