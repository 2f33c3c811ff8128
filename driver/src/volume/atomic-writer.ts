import { randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from './errno.js';

export interface PayloadFile {
  readonly data: Buffer | string;
  /** Applied with chmod, so the process umask never matters. */
  readonly mode: number;
}

export type Payload = ReadonlyMap<string, PayloadFile>;

export interface Ownership {
  readonly uid: number;
  readonly gid: number;
}

/** The fs calls the writer makes; tests swap one for a failing version. */
export type WriterFs = Pick<
  typeof nodeFs,
  'mkdir' | 'open' | 'chmod' | 'chown' | 'symlink' | 'rename' | 'readlink' | 'readdir' | 'readFile' | 'lstat' | 'unlink' | 'rm'
>;

export interface AtomicWriterOptions {
  /** Mode of each payload directory; the tmpfs root above it is what restricts entry. */
  readonly dirMode?: number;
  readonly fs?: WriterFs;
  readonly now?: () => Date;
}

export interface WriteResult {
  /** False when the payload equalled the current one and only links, modes and owners were ensured. */
  readonly changed: boolean;
  /** Name of the payload directory `..data` points to after the write. */
  readonly dir: string;
}

export class AtomicWriterError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`atomic-writer: ${message}`, options);
    this.name = 'AtomicWriterError';
  }
}

const DATA = '..data';
const DATA_TMP = '..data_tmp';
const PAYLOAD_DIR = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]+$/;

/**
 * Kubernetes' projected-volume layout: files live in `..<timestamp>.<random>/`, `..data` links to
 * the current one, and each visible name links into `..data/`. An update is one rename of
 * `..data`, so a reader that resolves `..data` once sees all old or all new files, never a mix.
 */
export class AtomicWriter {
  readonly targetDir: string;
  private readonly dirMode: number;
  private readonly fs: WriterFs;
  private readonly now: () => Date;

  constructor(targetDir: string, options: AtomicWriterOptions = {}) {
    this.targetDir = targetDir;
    this.dirMode = options.dirMode ?? 0o755;
    this.fs = options.fs ?? nodeFs;
    this.now = options.now ?? (() => new Date());
  }

  async write(payload: Payload, ownership?: Ownership): Promise<WriteResult> {
    validatePayload(payload);
    await this.assertLinksReplaceable(payload);
    const current = await this.currentDir();
    if (current !== undefined && (await this.sameContent(current, payload))) {
      await this.applyAttributes(current, payload, ownership);
      await this.finish(current, payload);
      return { changed: false, dir: current };
    }
    const next = await this.writePayloadDir(payload, ownership);
    await this.fs.rename(join(this.targetDir, DATA_TMP), join(this.targetDir, DATA)).catch(async (err: unknown) => {
      await this.discard(next);
      throw new AtomicWriterError(`swapping ${DATA} in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    });
    await syncDir(this.fs, this.targetDir).catch(() => undefined);
    await this.finish(next, payload);
    return { changed: true, dir: next };
  }

  /** The name `..data` points to, or undefined before the first write. */
  async currentDir(): Promise<string | undefined> {
    try {
      return await this.fs.readlink(join(this.targetDir, DATA));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw new AtomicWriterError(`reading ${DATA} in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async sameContent(dir: string, payload: Payload): Promise<boolean> {
    try {
      const names = await this.fs.readdir(join(this.targetDir, dir));
      if (names.length !== payload.size) return false;
      for (const [name, file] of payload) {
        const existing = await this.fs.readFile(join(this.targetDir, dir, name));
        if (!existing.equals(toBuffer(file.data))) return false;
      }
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return false;
      throw err;
    }
  }

  private async writePayloadDir(payload: Payload, ownership?: Ownership): Promise<string> {
    const name = `..${timestamp(this.now())}.${randomBytes(8).toString('hex')}`;
    const dir = join(this.targetDir, name);
    try {
      await this.fs.mkdir(dir, { mode: this.dirMode });
      await this.fs.chmod(dir, this.dirMode);
      for (const [file, content] of payload) {
        const handle = await this.fs.open(join(dir, file), 'wx', 0o600);
        try {
          await handle.writeFile(toBuffer(content.data));
          if (ownership !== undefined) await handle.chown(ownership.uid, ownership.gid);
          // chmod after chown: chown may clear setgid-like bits, and the mode must be exact.
          await handle.chmod(content.mode);
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
      await syncDir(this.fs, dir);
      await this.fs.rm(join(this.targetDir, DATA_TMP), { force: true });
      await this.fs.symlink(name, join(this.targetDir, DATA_TMP));
      return name;
    } catch (err) {
      await this.discard(name);
      throw new AtomicWriterError(`writing a new payload in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async discard(name: string): Promise<void> {
    await this.fs.rm(join(this.targetDir, DATA_TMP), { force: true }).catch(() => undefined);
    await this.fs.rm(join(this.targetDir, name), { recursive: true, force: true }).catch(() => undefined);
  }

  private async applyAttributes(dir: string, payload: Payload, ownership?: Ownership): Promise<void> {
    try {
      for (const [name, file] of payload) {
        const path = join(this.targetDir, dir, name);
        if (ownership !== undefined) await this.fs.chown(path, ownership.uid, ownership.gid);
        await this.fs.chmod(path, file.mode);
      }
    } catch (err) {
      throw new AtomicWriterError(`re-applying modes in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** After the swap: visible links, then stale links, then payload dirs nothing points to. */
  private async finish(current: string, payload: Payload): Promise<void> {
    try {
      await this.reconcileEntries(current, payload);
    } catch (err) {
      if (err instanceof AtomicWriterError) throw err;
      throw new AtomicWriterError(`updating links in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async reconcileEntries(current: string, payload: Payload): Promise<void> {
    for (const name of payload.keys()) await this.ensureLink(name);
    for (const entry of await this.fs.readdir(this.targetDir)) {
      if (entry.startsWith('..')) {
        if (PAYLOAD_DIR.test(entry) && entry !== current) {
          await this.fs.rm(join(this.targetDir, entry), { recursive: true, force: true });
        }
      } else if (!payload.has(entry) && (await this.linksIntoData(entry))) {
        await this.fs.unlink(join(this.targetDir, entry));
      }
    }
  }

  private async ensureLink(name: string): Promise<void> {
    const path = join(this.targetDir, name);
    const wanted = `${DATA}/${name}`;
    try {
      const stat = await this.fs.lstat(path);
      if (!stat.isSymbolicLink()) {
        throw new AtomicWriterError(`${path} exists and is not a symlink; refusing to replace it`);
      }
      if ((await this.fs.readlink(path)) === wanted) return;
      await this.fs.unlink(path);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    await this.fs.symlink(wanted, path);
  }

  /** Checked before anything changes, so a conflict never leaves a half-applied update. */
  private async assertLinksReplaceable(payload: Payload): Promise<void> {
    for (const name of payload.keys()) {
      try {
        if (!(await this.fs.lstat(join(this.targetDir, name))).isSymbolicLink()) {
          throw new AtomicWriterError(`${join(this.targetDir, name)} exists and is not a symlink; refusing to replace it`);
        }
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
  }

  private async linksIntoData(entry: string): Promise<boolean> {
    const path = join(this.targetDir, entry);
    const stat = await this.fs.lstat(path);
    return stat.isSymbolicLink() && (await this.fs.readlink(path)).startsWith(`${DATA}/`);
  }
}

/** Names must be plain base names: the writer only makes top-level links, and `..` is reserved. */
export function validatePayload(payload: Payload): void {
  for (const name of payload.keys()) {
    if (name === '' || name.includes('/') || name.includes('\0') || name.startsWith('.')) {
      throw new AtomicWriterError(`invalid file name ${JSON.stringify(name)}: must be a plain base name not starting with '.'`);
    }
    if (Buffer.byteLength(name) > 255) throw new AtomicWriterError(`file name ${JSON.stringify(name)} exceeds 255 bytes`);
  }
}

function toBuffer(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

function timestamp(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${date.getUTCFullYear()}_${pad(date.getUTCMonth() + 1)}_${pad(date.getUTCDate())}_${pad(date.getUTCHours())}_${pad(date.getUTCMinutes())}_${pad(date.getUTCSeconds())}`;
}

async function syncDir(fs: WriterFs, dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
