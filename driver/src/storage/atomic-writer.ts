import { randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { join } from 'node:path';
import { DATA_LINK, DATA_TMP_LINK, PAYLOAD_DIR_PATTERN } from '@spire-csi/sdk/layout';
import { systemClock, type Clock } from '@spire-csi/sdk/clock';
import { isErrno } from '../errno.js';

export interface PayloadFile {
  readonly data: Buffer | string;
  /** Applied with chmod, so the process umask never matters. */
  readonly mode: number;
  /**
   * Whether bytes already on disk count as this file's content although they differ (a timestamp
   * that alone must not cause a rewrite). Byte-equal content always counts.
   */
  readonly sameAs?: (existing: Buffer, wanted: Buffer) => boolean;
}

export type Payload = ReadonlyMap<string, PayloadFile>;

export interface Ownership {
  readonly uid: number;
  readonly gid: number;
}

/** The file-handle calls the writer makes. */
export interface WriterFileHandle {
  writeFile(data: Buffer): Promise<void>;
  chown(uid: number, gid: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The fs calls the writer makes (node:fs/promises fits); tests swap one for a failing version. */
export interface WriterFs {
  mkdir(path: string, options: { mode: number }): Promise<unknown>;
  open(path: string, flags: string, mode?: number): Promise<WriterFileHandle>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  rename(oldPath: string, newPath: string): Promise<void>;
  readlink(path: string): Promise<string>;
  readdir(path: string, options: { withFileTypes: true }): Promise<Dirent[]>;
  readFile(path: string): Promise<Buffer>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  rm(path: string, options: { recursive?: boolean; force?: boolean }): Promise<void>;
}

export interface AtomicWriterOptions {
  /** Mode of each payload directory; the tmpfs root above it is what restricts entry. */
  readonly dirMode?: number;
  readonly fs?: WriterFs;
  /** Names payload directories by time. */
  readonly clock?: Clock;
  /**
   * fsync each file and directory before and after the swap (default true). Only a target on a
   * memory filesystem (the driver's tmpfs, which does not survive a reboot anyway) may turn it
   * off: there fsync does nothing but still costs calls. Atomicity for readers does not depend on
   * it; the rename of `..data` is what readers see.
   */
  readonly durable?: boolean;
  /**
   * Runs the removal of replaced payload directories later instead of inside write(). Readers are
   * unaffected (they follow `..data`, and a reader still inside an old directory gets longer to
   * finish); a directory left by a crash or a failed removal is removed by the next write.
   * Default: removed before write() resolves.
   */
  readonly deferCleanup?: (task: () => Promise<void>) => void;
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

const DATA = DATA_LINK;
const DATA_TMP = DATA_TMP_LINK;
const PAYLOAD_DIR = PAYLOAD_DIR_PATTERN;

/**
 * Kubernetes' projected-volume layout: files live in `..<timestamp>.<random>/`, `..data` links to
 * the current one, and each visible name links into `..data/`. An update is one rename of
 * `..data`, so a reader that resolves `..data` once sees all old or all new files, never a mix.
 */
export class AtomicWriter {
  readonly targetDir: string;
  private readonly dirMode: number;
  private readonly fs: WriterFs;
  private readonly clock: Clock;
  private readonly durable: boolean;
  private readonly deferCleanup: ((task: () => Promise<void>) => void) | undefined;
  /** What the last successful write left in place; lets a changed payload skip reading the old one. */
  private lastWritten: Payload | undefined;
  /** Visible names whose link this writer created or verified in its last successful write. */
  private linked = new Set<string>();

  constructor(targetDir: string, options: AtomicWriterOptions = {}) {
    this.targetDir = targetDir;
    this.dirMode = options.dirMode ?? 0o755;
    this.fs = options.fs ?? nodeFs;
    this.clock = options.clock ?? systemClock;
    this.durable = options.durable ?? true;
    this.deferCleanup = options.deferCleanup;
  }

  async write(payload: Payload, ownership?: Ownership): Promise<WriteResult> {
    validatePayload(payload);
    const last = this.lastWritten;
    this.lastWritten = undefined;
    const result = await this.writeOnce(payload, last, ownership);
    this.lastWritten = payload;
    return result;
  }

  private async writeOnce(payload: Payload, last: Payload | undefined, ownership?: Ownership): Promise<WriteResult> {
    // One listing serves the conflict check, the link updates and the cleanup: the writer is the
    // only one creating entries here, and what it creates meanwhile (the new payload dir, the
    // renamed `..data_tmp`) must not be cleaned up anyway.
    const entries = await this.list();
    this.assertLinksReplaceable(payload, entries);
    const current = entries.has(DATA) ? await this.currentDir() : undefined;
    // When the payload differs from the one this writer last put there, the folder cannot hold it
    // (at worst someone else wrote exactly it, and it is written once more).
    const knownChanged = last !== undefined && !samePayload(last, payload);
    if (current !== undefined && !knownChanged && (await this.sameContent(current, payload))) {
      await this.applyAttributes(current, payload, ownership);
      await this.finish(current, payload, entries);
      return { changed: false, dir: current };
    }
    const next = await this.writePayloadDir(payload, entries, ownership);
    await this.fs.rename(join(this.targetDir, DATA_TMP), join(this.targetDir, DATA)).catch(async (err: unknown) => {
      await this.discard(next);
      throw new AtomicWriterError(`swapping ${DATA} in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    });
    if (this.durable) await syncDir(this.fs, this.targetDir).catch(() => undefined);
    await this.finish(next, payload, entries);
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

  /** The target's entries by name; empty when it does not exist (creating the payload dir then reports it). */
  private async list(): Promise<Map<string, Dirent>> {
    try {
      return new Map((await this.fs.readdir(this.targetDir, { withFileTypes: true })).map((entry) => [entry.name, entry]));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return new Map();
      throw new AtomicWriterError(`listing ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async sameContent(dir: string, payload: Payload): Promise<boolean> {
    try {
      // Contents first: after a rotation the first file already differs and nothing else is read.
      for (const [name, file] of payload) {
        if (!sameFile(await this.fs.readFile(join(this.targetDir, dir, name)), file)) return false;
      }
      return (await this.fs.readdir(join(this.targetDir, dir), { withFileTypes: true })).length === payload.size;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return false;
      throw err;
    }
  }

  private async writePayloadDir(payload: Payload, entries: ReadonlyMap<string, Dirent>, ownership?: Ownership): Promise<string> {
    const name = `..${timestamp(this.clock.now())}.${randomBytes(8).toString('hex')}`;
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
          if (this.durable) await handle.sync();
        } finally {
          await handle.close();
        }
      }
      if (this.durable) await syncDir(this.fs, dir);
      // A leftover from a write cut short; the listing is enough to know (only this writer makes it).
      if (entries.has(DATA_TMP)) await this.fs.rm(join(this.targetDir, DATA_TMP), { force: true });
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
  private async finish(current: string, payload: Payload, entries: ReadonlyMap<string, Dirent>): Promise<void> {
    try {
      await this.reconcileEntries(current, payload, entries);
    } catch (err) {
      if (err instanceof AtomicWriterError) throw err;
      throw new AtomicWriterError(`updating links in ${this.targetDir} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async reconcileEntries(current: string, payload: Payload, entries: ReadonlyMap<string, Dirent>): Promise<void> {
    for (const name of payload.keys()) {
      const entry = entries.get(name);
      // This writer made or checked that link in its last write and it is still a symlink: only
      // its target could have changed, which nothing but root on the host can do. Skipping the
      // readlink saves a call per file per rotation; a restarted driver checks every link again.
      if (entry?.isSymbolicLink() === true && this.linked.has(name)) continue;
      await this.ensureLink(name, entry);
    }
    this.linked = new Set(payload.keys());
    const stale: string[] = [];
    for (const [name, entry] of entries) {
      if (name.startsWith('..')) {
        // Never `current`; and a directory stale now can never become current (names are unique).
        if (PAYLOAD_DIR.test(name) && name !== current) stale.push(name);
      } else if (!payload.has(name) && entry.isSymbolicLink() && (await this.linksIntoData(name))) {
        await this.fs.unlink(join(this.targetDir, name));
      }
    }
    if (stale.length === 0) return;
    const removeStale = async (): Promise<void> => {
      for (const name of stale) await this.removePayloadDir(name);
    };
    if (this.deferCleanup === undefined) await removeStale();
    else this.deferCleanup(removeStale);
  }

  private async ensureLink(name: string, entry: Dirent | undefined): Promise<void> {
    const path = join(this.targetDir, name);
    const wanted = `${DATA}/${name}`;
    if (entry !== undefined) {
      if (!entry.isSymbolicLink()) {
        throw new AtomicWriterError(`${path} exists and is not a symlink; refusing to replace it`);
      }
      try {
        if ((await this.fs.readlink(path)) === wanted) return;
        await this.fs.unlink(path);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    await this.fs.symlink(wanted, path);
  }

  /** Checked before anything changes, so a conflict never leaves a half-applied update. */
  private assertLinksReplaceable(payload: Payload, entries: ReadonlyMap<string, Dirent>): void {
    for (const name of payload.keys()) {
      const entry = entries.get(name);
      if (entry !== undefined && !entry.isSymbolicLink()) {
        throw new AtomicWriterError(`${join(this.targetDir, name)} exists and is not a symlink; refusing to replace it`);
      }
    }
  }

  /**
   * A payload dir holds only the files this writer put there: unlink them and remove the dir,
   * without rm's recursive probing. Anything unexpected (a subdirectory) falls back to rm.
   */
  private async removePayloadDir(name: string): Promise<void> {
    const dir = join(this.targetDir, name);
    try {
      for (const entry of await this.fs.readdir(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) throw Object.assign(new Error(`${dir} holds a directory`), { code: 'ENOTEMPTY' });
        await this.fs.unlink(join(dir, entry.name));
      }
      await this.fs.rmdir(dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      await this.fs.rm(dir, { recursive: true, force: true });
    }
  }

  private async linksIntoData(entry: string): Promise<boolean> {
    try {
      return (await this.fs.readlink(join(this.targetDir, entry))).startsWith(`${DATA}/`);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'EINVAL')) return false;
      throw err;
    }
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

function sameFile(existing: Buffer, file: PayloadFile): boolean {
  const wanted = toBuffer(file.data);
  return existing.equals(wanted) || (file.sameAs?.(existing, wanted) ?? false);
}

/** Same names and, file by file, the same content (by the same rule as on disk). */
function samePayload(previous: Payload, next: Payload): boolean {
  if (previous.size !== next.size) return false;
  for (const [name, file] of next) {
    const old = previous.get(name);
    if (old === undefined) return false;
    if (old.data !== file.data && !sameFile(toBuffer(old.data), file)) return false;
  }
  return true;
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
