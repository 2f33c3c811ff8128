import { getSystemErrorMap } from 'node:util';

/** The system calls this driver makes through the FFI; each has its own hints. */
export type LibcSyscall = 'mount' | 'umount2' | 'statx';

/**
 * A failed system call, shaped like Node's own system errors (`code`, `errno`, `syscall`, `path`)
 * so `isErrno(err, 'ENOENT')` and log fields work the same whichever way a call was made.
 */
export class LibcError extends Error {
  /** Symbolic name, e.g. 'ENOENT'; `E<number>` when this Node does not know the number. */
  readonly code: string;
  /** Positive errno as the kernel returned it (Node's own errors carry it negated). */
  readonly errno: number;
  readonly syscall: LibcSyscall;
  readonly path: string;
  /** `ENOENT (no such file or directory): <what it means for this call>`, for callers that name the path themselves. */
  readonly detail: string;

  constructor(syscall: LibcSyscall, path: string, errno: number) {
    const { code, description } = describeErrno(errno);
    const detail = `${code} (${description})${hintFor(syscall, code)}`;
    super(`${syscall} ${JSON.stringify(path)}: ${detail}`);
    this.name = 'LibcError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.path = path;
    this.detail = detail;
  }
}

let errorMap: Map<number, [string, string]> | undefined;

/** Name and text of an errno, from the table libuv ships with Node: the same words Node's fs errors use. */
export function describeErrno(errno: number): { code: string; description: string } {
  errorMap ??= getSystemErrorMap();
  // libuv keys Unix errors by the negated errno.
  const known = errorMap.get(-errno);
  return known === undefined ? { code: `E${errno}`, description: `errno ${errno}` } : { code: known[0], description: known[1] };
}

/**
 * What an errno usually means for this driver's calls: the generic text says "no such file or
 * directory", the operator needs to know which file and what to do about it.
 */
const HINTS: Readonly<Record<LibcSyscall, Readonly<Record<string, string>>>> = {
  mount: {
    EPERM: 'mounting needs CAP_SYS_ADMIN; run the driver as root in a privileged container',
    EACCES: 'a parent directory of the target cannot be searched',
    ENOENT: 'the target directory or one of its parents does not exist',
    ENOTDIR: 'the target or one of its parents is not a directory',
    EBUSY: 'the target is busy',
    EINVAL: 'the kernel rejected the tmpfs mount options',
    ENOSPC: 'this mount namespace holds too many mounts (sysctl fs.mount-max)',
    ENOMEM: 'the kernel could not allocate memory for the mount',
    ENODEV: 'this kernel has no tmpfs support',
    ELOOP: 'too many symbolic links while resolving the target',
    ENAMETOOLONG: 'the target path is too long',
  },
  umount2: {
    EPERM: 'unmounting needs CAP_SYS_ADMIN; run the driver as root in a privileged container',
    EBUSY: 'the mount is in use: a process has a file open or its working directory inside it',
    EINVAL: 'the target is not a mount point, or the mount is locked to this mount namespace',
    ENOENT: 'the target does not exist',
    ENOTDIR: 'a parent of the target is not a directory',
    ENAMETOOLONG: 'the target path is too long',
  },
  statx: {
    ELOOP: 'too many symbolic links while resolving the path',
    EACCES: 'a parent directory of the path cannot be searched',
    ENAMETOOLONG: 'the path is too long',
  },
};

function hintFor(syscall: LibcSyscall, code: string): string {
  const hint = HINTS[syscall][code];
  return hint === undefined ? '' : `: ${hint}`;
}
