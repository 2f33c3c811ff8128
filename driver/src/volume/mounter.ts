import { execFile } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { isErrno } from './errno.js';
import { mountsAt, parseMountInfo } from './mountinfo.js';

const execFileAsync = promisify(execFile);

/** Small on purpose: a credential folder is a few KiB, and tmpfs pages count against the pod's node. */
export const DEFAULT_TMPFS_SIZE_BYTES = 1024 * 1024;

export interface TmpfsOptions {
  readonly sizeBytes: number;
  /** Mode of the tmpfs root, e.g. 0o755, or 0o750 with `gid` so only that group may enter. */
  readonly mode: number;
  readonly gid?: number;
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

export interface LinuxMounterOptions {
  readonly mountBinary?: string;
  readonly umountBinary?: string;
  readonly mountInfoPath?: string;
  readonly commandTimeoutMs?: number;
}

/** Builds the `-o` value; exported so the exact option set is tested without mounting. */
export function tmpfsMountOptions(options: TmpfsOptions): string {
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
  // Credentials never need to be executed or to act as devices or setuid programs.
  parts.push('nosuid', 'nodev', 'noexec');
  return parts.join(',');
}

/** Mounts with the util-linux binaries, called without a shell so paths are never interpreted. */
export class LinuxMounter implements Mounter {
  private readonly mountBinary: string;
  private readonly umountBinary: string;
  private readonly mountInfoPath: string;
  private readonly timeoutMs: number;

  constructor(options: LinuxMounterOptions = {}) {
    this.mountBinary = options.mountBinary ?? 'mount';
    this.umountBinary = options.umountBinary ?? 'umount';
    this.mountInfoPath = options.mountInfoPath ?? '/proc/self/mountinfo';
    this.timeoutMs = options.commandTimeoutMs ?? 30_000;
  }

  async mountTmpfs(target: string, options: TmpfsOptions): Promise<void> {
    const args = ['-t', 'tmpfs', '-o', tmpfsMountOptions(options), 'tmpfs', target];
    try {
      await execFileAsync(this.mountBinary, args, { timeout: this.timeoutMs });
    } catch (err) {
      throw new MountError(`mounting tmpfs at ${target} failed: ${commandFailure(err)}`, { cause: err });
    }
  }

  async unmount(target: string): Promise<void> {
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

  async isMountPoint(path: string): Promise<boolean> {
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
      throw new MountError(`cannot resolve ${path}: ${(err as Error).message}`, { cause: err });
    }
    const text = await readFile(this.mountInfoPath, 'utf8');
    return mountsAt(parseMountInfo(text), resolve(real)).length > 0;
  }
}

function commandFailure(err: unknown): string {
  const e = err as { stderr?: string; message?: string; code?: unknown };
  const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
  return stderr !== '' ? stderr : (e.message ?? String(err));
}
