/**
 * Reads one consistent set of files from a credential folder.
 *
 * With a Kubernetes-style `..data` link (kubelet's AtomicWriter, our driver) every update is a new
 * payload directory plus one rename of `..data`. Resolving `..data` once and reading every file
 * through that directory gives one generation; reading `..data` again afterwards proves the
 * directory was still current, so a concurrent swap (which may delete the old directory mid-read)
 * is detected and retried instead of mixing generations.
 *
 * Plain files have no such guarantee, so the caller's parser decides: the read is retried until it
 * parses (e.g. key matches certificate), because a writer replacing files one by one is briefly
 * inconsistent.
 *
 * Each attempt reads synchronously, in one turn of the event loop. A credential folder is a few
 * small files on a local filesystem (the driver's tmpfs, a kubelet volume), so the whole read is a
 * dozen syscalls of microseconds each; done with fs/promises it was ~20 threadpool round trips
 * (readFile alone is open, stat, read, close), and on a busy server every round trip waits for the
 * event loop: 70-120 ms per reload under load in the rotation bench, for well under 1 ms of work.
 * One turn also leaves no window for the folder to change between two of the reads.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { systemClock, type Clock } from '../clock/clock.js';
import { DATA_LINK } from '../layout/layout.js';
import { errnoOf, messageOf } from '../internal/error-text.js';
import { SourceError, type SourceErrorKind } from './errors.js';

export interface FolderSnapshot {
  readonly folder: string;
  /** What `..data` pointed to while the files were read; null for plain files. */
  readonly payloadDir: string | null;
  /** File name → bytes, for the names the selector chose. */
  readonly files: ReadonlyMap<string, Buffer>;
  /** Reads it took to get this snapshot (1 when nothing moved). */
  readonly attempts: number;
}

/** The kinds of error readSnapshot raises itself. */
export type SnapshotErrorKind = Extract<SourceErrorKind, 'missing' | 'unreadable' | 'inconsistent' | 'closed'>;

/** Builds an error of the calling source, so its message is composed once, naming that source. */
export type SnapshotErrorFactory = (kind: SnapshotErrorKind, message: string, options?: { cause?: unknown }) => Error;

const fileSourceError: SnapshotErrorFactory = (kind, message, options) => new SourceError('filesource', kind, message, options);

export interface ReadSnapshotOptions<T> {
  /** Which of the listed names to read; unknown names are ignored (the standard allows extras). */
  select(names: readonly string[]): readonly string[];
  /** Turns a snapshot into a value or throws. In plain mode a throw means "retry". */
  parse(snapshot: FolderSnapshot): T;
  /** Give up after this many reads. Default 10. */
  maxAttempts?: number;
  /** Pause before re-reading plain files that did not parse. Default 20 ms. */
  retryDelayMs?: number;
  /** Times the pauses between attempts. Default systemClock. */
  clock?: Clock;
  /** Ends the retries: a pause in progress is cut short and the read fails with 'closed'. */
  signal?: AbortSignal;
  /** The errors the reader raises itself. Default: a `filesource` SourceError. */
  createError?: SnapshotErrorFactory;
}

export interface SnapshotResult<T> {
  readonly snapshot: FolderSnapshot;
  readonly value: T;
}

const DEFAULT_MAX_ATTEMPTS = 10;
const DEFAULT_RETRY_DELAY_MS = 20;

/** Thrown internally when the files moved under the reader; always retried. */
class MovedError extends Error {}

/** Waits `ms` on `clock`, or less when `signal` aborts; then throws if it did. */
async function pause(clock: Clock, ms: number, folder: string, signal: AbortSignal | undefined, fail: SnapshotErrorFactory): Promise<void> {
  if (signal?.aborted !== true) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clock.clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = clock.setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
  if (signal?.aborted === true) throw fail('closed', `stopped reading ${folder}`);
}

function describeFsError(err: unknown, folder: string, fail: SnapshotErrorFactory): Error {
  const code = errnoOf(err);
  if (code === 'ENOENT') return fail('missing', `credential folder ${folder} does not exist`, { cause: err });
  if (code === 'ENOTDIR') return fail('missing', `credential folder ${folder} is not a directory`, { cause: err });
  return fail('unreadable', `cannot read credential folder ${folder}: ${messageOf(err)}`, { cause: err });
}

/** The `..data` target, or null when there is no such link (plain files). */
function readDataLink(folder: string): string | null {
  try {
    return readlinkSync(join(folder, DATA_LINK));
  } catch (err) {
    const code = errnoOf(err);
    // EINVAL: `..data` exists but is not a symlink; its files are then read like plain files.
    if (code === 'ENOENT' || code === 'EINVAL') return null;
    throw err;
  }
}

function readNamed(dir: string, names: readonly string[], moved: boolean): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of names) {
    try {
      files.set(name, readFileSync(join(dir, name)));
    } catch (err) {
      // A file vanishing between listing and reading means a writer is mid-update.
      if (errnoOf(err) === 'ENOENT') throw moved ? new MovedError() : err;
      throw err;
    }
  }
  return files;
}

function readThroughDataLink(
  folder: string,
  target: string,
  select: (names: readonly string[]) => readonly string[],
): Map<string, Buffer> {
  // resolve() keeps an absolute target as is and anchors the usual relative one at the folder.
  const dir = resolve(folder, target);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    // The payload directory was removed after we resolved `..data`: a swap happened.
    if (errnoOf(err) === 'ENOENT') throw new MovedError();
    throw err;
  }
  const files = readNamed(dir, select(names), true);
  if (readDataLink(folder) !== target) throw new MovedError();
  return files;
}

function readPlain(folder: string, select: (names: readonly string[]) => readonly string[]): Map<string, Buffer> {
  const names = readdirSync(folder).filter((name) => !name.startsWith('..'));
  try {
    return readNamed(folder, select(names), false);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') throw new MovedError();
    throw err;
  }
}

/**
 * Reads `folder` and parses it with `options.parse`, retrying (bounded) while the files move.
 * Throws an error of `options.createError`; a parse error is rethrown as is once retries are exhausted (plain
 * files) or immediately (`..data`, whose content is already consistent).
 */
export async function readSnapshot<T>(folder: string, options: ReadSnapshotOptions<T>): Promise<SnapshotResult<T>> {
  const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  const retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  const clock = options.clock ?? systemClock;
  const fail = options.createError ?? fileSourceError;
  let lastProblem = 'the files kept changing';
  let lastParseError: unknown;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let target: string | null;
    let files: Map<string, Buffer>;
    try {
      target = readDataLink(folder);
      files = target === null ? readPlain(folder, options.select) : readThroughDataLink(folder, target, options.select);
    } catch (err) {
      if (err instanceof MovedError) {
        lastProblem = 'the files changed while they were being read';
        // A swap only happens when a complete new generation exists, so re-reading at once is
        // enough; yielding lets the writer finish its rename first.
        await pause(clock, 0, folder, options.signal, fail);
        continue;
      }
      throw describeFsError(err, folder, fail);
    }
    const snapshot: FolderSnapshot = { folder, payloadDir: target, files, attempts: attempt };
    if (target !== null) return { snapshot, value: options.parse(snapshot) };
    try {
      return { snapshot, value: options.parse(snapshot) };
    } catch (err) {
      lastParseError = err;
      if (attempt < maxAttempts) await pause(clock, retryDelayMs, folder, options.signal, fail);
    }
  }
  if (lastParseError !== undefined) throw lastParseError;
  throw fail('inconsistent', `no consistent read of ${folder} after ${maxAttempts} attempts: ${lastProblem}`);
}
