import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, isErrno } from '../errno.js';
import type { VolumeSpec } from '../volume/volume-spec.js';
import { parseVolumeSpec } from './record-format.js';

/** What survives a driver restart for one volume. Never holds key material. */
export interface VolumeRecord {
  readonly version: 1;
  readonly spec: VolumeSpec;
  readonly createdAt: string;
}

/** A record written and visible, whose directory entry is not yet known to be durable. */
export interface StagedRecord {
  readonly record: VolumeRecord;
  /** Makes the record durable; throws VolumeStoreError. */
  commit(): Promise<void>;
}

export type VolumeStoreErrorKind = 'read-only' | 'permission' | 'no-space' | 'corrupt' | 'io';

export class VolumeStoreError extends Error {
  readonly kind: VolumeStoreErrorKind;

  constructor(kind: VolumeStoreErrorKind, message: string, options?: { cause?: unknown }) {
    super(`volume-store: ${message}`, options);
    this.name = 'VolumeStoreError';
    this.kind = kind;
  }
}

export interface CorruptRecord {
  readonly file: string;
  readonly reason: string;
}

export interface VolumeListing {
  readonly records: VolumeRecord[];
  readonly corrupt: CorruptRecord[];
}

const RECORD_FILE = /^[0-9a-f]{64}\.json$/;
const TEMP_MARKER = '.tmp-';

/**
 * One JSON file per volume under `<stateDir>/volumes`, replaced atomically (temp file, fsync,
 * rename, fsync dir) so a crash leaves either the old or the new record, never a torn one.
 */
export class VolumeStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'volumes');
  }

  pathFor(volumeId: string): string {
    return join(this.dir, `${createHash('sha256').update(volumeId, 'utf8').digest('hex')}.json`);
  }

  /** Creates the directory and removes temp files a crash left behind. */
  async init(): Promise<void> {
    await this.io('creating the state directory', () => mkdir(this.dir, { recursive: true, mode: 0o700 }));
    for (const name of await this.io('listing', () => readdir(this.dir))) {
      if (name.includes(TEMP_MARKER)) await unlink(join(this.dir, name)).catch(() => undefined);
    }
  }

  async put(spec: VolumeSpec, createdAt: Date = new Date()): Promise<VolumeRecord> {
    const staged = await this.stage(spec, createdAt);
    await staged.commit();
    return staged.record;
  }

  /**
   * The first half of put(): the record is complete (its data fsynced before the rename, so it is
   * never torn) and in place for a driver that restarts after this process dies. `commit()` then
   * fsyncs the directory, which makes the rename itself survive a power loss; it may run alongside
   * other work (the mount) but must finish before the volume is reported published. Until then a
   * power loss can only lose the record whole, together with the tmpfs it describes, which a
   * reboot loses anyway.
   */
  async stage(spec: VolumeSpec, createdAt: Date = new Date()): Promise<StagedRecord> {
    const record: VolumeRecord = { version: 1, spec, createdAt: createdAt.toISOString() };
    const target = this.pathFor(spec.volumeId);
    const temp = `${target}${TEMP_MARKER}${randomBytes(6).toString('hex')}`;
    const what = `writing the record of volume ${spec.volumeId}`;
    await this.io(what, async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      try {
        const handle = await open(temp, 'wx', 0o600);
        try {
          await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`, 'utf8');
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, target);
      } catch (err) {
        await unlink(temp).catch(() => undefined);
        throw err;
      }
    });
    return { record, commit: () => this.io(what, () => this.syncDir()) };
  }

  /** Undefined when there is no record; throws `corrupt` when the file cannot be trusted. */
  async get(volumeId: string): Promise<VolumeRecord | undefined> {
    const file = this.pathFor(volumeId);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw this.wrap(`reading the record of volume ${volumeId}`, err);
    }
    const record = parseRecord(text, file);
    if (record.spec.volumeId !== volumeId) {
      throw new VolumeStoreError('corrupt', `${file} holds volume ${record.spec.volumeId}, not ${volumeId}`);
    }
    return record;
  }

  /** Idempotent. */
  async remove(volumeId: string): Promise<void> {
    await this.io(`removing the record of volume ${volumeId}`, async () => {
      try {
        await unlink(this.pathFor(volumeId));
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return;
        throw err;
      }
      await this.syncDir();
    });
  }

  /**
   * Every readable record; unreadable ones are reported, not thrown, so one bad file cannot block
   * startup. Read synchronously: this runs once, before the CSI socket serves, and a thousand small
   * files read one after another through the threadpool (four round trips each) took ~0.4 s of the
   * restart, against ~30 ms read directly.
   */
  async list(): Promise<VolumeListing> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return { records: [], corrupt: [] };
      throw this.wrap('listing records', err);
    }
    const records: VolumeRecord[] = [];
    const corrupt: CorruptRecord[] = [];
    for (const name of names.filter((n) => RECORD_FILE.test(n)).sort()) {
      const file = join(this.dir, name);
      try {
        const record = parseRecord(readFileSync(file, 'utf8'), file);
        if (this.pathFor(record.spec.volumeId) !== file) {
          throw new VolumeStoreError('corrupt', `${file} holds volume ${record.spec.volumeId} under another name`);
        }
        records.push(record);
      } catch (err) {
        corrupt.push({ file, reason: (err as Error).message });
      }
    }
    return { records, corrupt };
  }

  private async syncDir(): Promise<void> {
    const handle = await open(this.dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  private async io<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.wrap(what, err);
    }
  }

  private wrap(what: string, err: unknown): VolumeStoreError {
    if (err instanceof VolumeStoreError) return err;
    const message = (err as Error).message;
    switch (errnoCode(err)) {
      case 'EROFS':
        return new VolumeStoreError('read-only', `${what}: state directory ${this.dir} is on a read-only filesystem; mount a writable state dir`, { cause: err });
      case 'EACCES':
      case 'EPERM':
        return new VolumeStoreError('permission', `${what}: no permission to write ${this.dir}: ${message}`, { cause: err });
      case 'ENOSPC':
      case 'EDQUOT':
        return new VolumeStoreError('no-space', `${what}: no space left for ${this.dir}`, { cause: err });
      default:
        return new VolumeStoreError('io', `${what} in ${this.dir} failed: ${message}`, { cause: err });
    }
  }
}

function parseRecord(text: string, file: string): VolumeRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new VolumeStoreError('corrupt', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null) throw new VolumeStoreError('corrupt', `${file} is not a JSON object`);
  const obj = raw as Record<string, unknown>;
  if (obj.version !== 1) throw new VolumeStoreError('corrupt', `${file} has unsupported version ${String(obj.version)}`);
  if (typeof obj.createdAt !== 'string' || Number.isNaN(Date.parse(obj.createdAt))) {
    throw new VolumeStoreError('corrupt', `${file} has no valid createdAt`);
  }
  try {
    return { version: 1, spec: parseVolumeSpec(obj.spec), createdAt: obj.createdAt };
  } catch (err) {
    throw new VolumeStoreError('corrupt', `${file}: ${(err as Error).message}`);
  }
}
