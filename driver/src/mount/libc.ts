/**
 * mount(2), umount2(2) and statx(2), called in-process through the koffi FFI. Exec'ing mount(8)
 * costs a fork, an exec and libmount's parsing (~20 ms, and far more under concurrency); the
 * system call itself takes tens of microseconds. Loaded lazily and optional: when koffi or
 * these symbols are missing (another CPU without a prebuilt koffi, a static Node, not Linux),
 * `loadLibc` says why and the mounter keeps exec'ing the util-linux binaries.
 */
import { constants, endianness } from 'node:os';
import type Koffi from 'koffi';
import { LibcError } from './libc-errors.js';

export { LibcError } from './libc-errors.js';

// <linux/mount.h> and <sys/mount.h>; identical on every Linux architecture.
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const UMOUNT_NOFOLLOW = 0x8;

// <fcntl.h> and <linux/stat.h>.
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_STATX_DONT_SYNC = 0x4000;
const STATX_ATTR_MOUNT_ROOT = 0x2000n;
/** sizeof(struct statx): fixed by the kernel ABI, with spare room the kernel may fill later. */
const STATX_SIZE = 256;
const STX_ATTRIBUTES_OFFSET = 8;
const STX_ATTRIBUTES_MASK_OFFSET = 56;

export interface Libc {
  /** Throws `LibcError` with the errno when the kernel refuses. */
  mount(source: string, target: string, fsType: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  /**
   * Whether `path` is the root of a mount, from statx's STATX_ATTR_MOUNT_ROOT: one system call
   * whatever the number of mounts. `follow` resolves a final symlink first (as stat does), else
   * answers for the link itself (as lstat does). Undefined when the kernel cannot say (statx
   * missing from libc or blocked, or a kernel older than 5.8 that does not report the bit).
   * Throws `LibcError` (ENOENT, ENOTDIR...) when the path cannot be resolved.
   */
  isMountRoot(path: string, follow: boolean): boolean | undefined;
}

export type LibcLoad = { readonly libc: Libc } | { readonly libc?: undefined; readonly reason: string };

type MountFn = (source: string, target: string, fsType: string, flags: number, data: string) => number;
type Umount2Fn = (target: string, flags: number) => number;
type StatxFn = (dirfd: number, path: string, flags: number, mask: number, buffer: Buffer) => number;

let loading: Promise<LibcLoad> | undefined;

/** Binds once per process; every mounter shares the binding. Never rejects. */
export function loadLibc(): Promise<LibcLoad> {
  loading ??= bind();
  return loading;
}

async function bind(): Promise<LibcLoad> {
  if (process.platform !== 'linux') return { reason: `mount(2) is Linux-only and this is ${process.platform}` };
  let koffi: typeof Koffi;
  try {
    koffi = (await import('koffi')).default;
  } catch (err) {
    return { reason: `the koffi FFI package cannot be loaded (${messageOf(err)})` };
  }
  try {
    // null: the symbols already loaded into this process, i.e. whichever libc Node runs on
    // (glibc or musl), without guessing its file name.
    const lib = koffi.load(null);
    const mount = lib.func(
      'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)',
    ) as MountFn;
    const umount2 = lib.func('int umount2(const char *target, int flags)') as Umount2Fn;
    let statx: StatxFn | undefined;
    try {
      // void *: koffi hands the Buffer's memory to the kernel as is, nothing copied.
      statx = lib.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf)') as StatxFn;
    } catch {
      // glibc before 2.28 has no wrapper; mount point checks then use stat and mountinfo.
      statx = undefined;
    }
    return { libc: new KoffiLibc(() => koffi.errno(), mount, umount2, statx) };
  } catch (err) {
    return { reason: `libc's mount functions cannot be bound through koffi (${messageOf(err)})` };
  }
}

class KoffiLibc implements Libc {
  /** Reused: calls are synchronous on the one JS thread, so no two calls share it at once. */
  private readonly statxBuffer = Buffer.alloc(STATX_SIZE);
  private readonly readU64 =
    endianness() === 'LE'
      ? (offset: number): bigint => this.statxBuffer.readBigUInt64LE(offset)
      : (offset: number): bigint => this.statxBuffer.readBigUInt64BE(offset);

  constructor(
    private readonly errno: () => number,
    private readonly mountFn: MountFn,
    private readonly umount2Fn: Umount2Fn,
    private statxFn: StatxFn | undefined,
  ) {}

  // Synchronous on purpose: each call takes microseconds on the kubelet's local paths, while
  // koffi's async variant hops through the libuv pool (~10x the cost) and competes with the fs
  // work of the credential writers.

  mount(source: string, target: string, fsType: string, flags: number, data: string): void {
    for (const value of [source, target, fsType, data]) assertCString(value);
    if (this.mountFn(source, target, fsType, flags, data) !== 0) throw new LibcError('mount', target, this.errno());
  }

  umount2(target: string, flags: number): void {
    assertCString(target);
    if (this.umount2Fn(target, flags) !== 0) throw new LibcError('umount2', target, this.errno());
  }

  isMountRoot(path: string, follow: boolean): boolean | undefined {
    if (this.statxFn === undefined) return undefined;
    assertCString(path);
    const flags = (follow ? 0 : AT_SYMLINK_NOFOLLOW) | AT_STATX_DONT_SYNC;
    // Mask 0: only the attributes are wanted, which the kernel fills whatever the mask.
    if (this.statxFn(AT_FDCWD, path, flags, 0, this.statxBuffer) !== 0) {
      const errno = this.errno();
      if (errno === constants.errno.ENOSYS || errno === constants.errno.EPERM) {
        // An old kernel, or a seccomp profile that blocks statx: stop asking.
        this.statxFn = undefined;
        return undefined;
      }
      throw new LibcError('statx', path, errno);
    }
    // The mask says which attribute bits this kernel knows; without the bit, "0" means "unknown".
    if ((this.readU64(STX_ATTRIBUTES_MASK_OFFSET) & STATX_ATTR_MOUNT_ROOT) === 0n) return undefined;
    return (this.readU64(STX_ATTRIBUTES_OFFSET) & STATX_ATTR_MOUNT_ROOT) !== 0n;
  }
}

/** The kernel reads up to the first NUL, so a path containing one would name another file. */
function assertCString(value: string): void {
  if (value.includes('\0')) throw new TypeError(`libc: ${JSON.stringify(value)} contains a NUL byte`);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
