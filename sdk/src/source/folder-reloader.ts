/**
 * The reload machinery FileSource (X.509) and JwtSource (JWT) share: keep the material of one
 * credential folder current, re-reading it on filesystem events (debounced, since one rotation is
 * a burst of them), on a periodic re-check that covers missed events, and on refresh().
 *
 * The rule that shapes everything here: a bad read never replaces good material. Every re-read
 * takes one consistent snapshot, parses and checks it completely, and only then swaps; anything
 * else is reported ('error' event, or logger.warn when nobody listens so an unhandled 'error'
 * cannot crash the application), once per distinct bad content, while the last good material
 * keeps serving.
 *
 * A source composes one reloader and hands it a CredentialFolderDelegate for what is its own:
 * which files it reads, how it parses and checks them, when a new read counts as an update, how
 * it watches expiry, its error class and its wording. The reloader owns the shared state: the
 * current material, ready() waiters, timers, the failure backoff and the report-once dedupe.
 */
import { createHash } from 'node:crypto';
import { systemClock, type Clock, type ClockTimer } from '../clock/clock.js';
import { ReadyWaiters } from './ready-waiters.js';
import type { Logger } from '../logger.js';
import { messageOf } from '../internal/error-text.js';
import type { SourceErrorKind } from './errors.js';
import { expiryCheckDelay } from './expiry-check-delay.js';
import { FolderWatcher } from './folder-watcher.js';
import { readSnapshot, type FolderSnapshot } from './snapshot.js';

/** The reload options `FileSource` and `JwtSource` both take, under the same names and defaults. */
export interface FolderReloadOptions {
  /** Quiet period after a filesystem event before re-reading. Default: the source's. */
  readonly debounceMs?: number;
  /**
   * Re-read this often even without events (missed inotify events, folders replaced in ways a
   * watch cannot follow). Default 30 s. 0 disables it while the current material is good; failed
   * reads are still retried after 1 s, 2 s, 4 s, then every 5 s (at most this interval).
   */
  readonly recheckIntervalMs?: number;
  /** Watch the folder for changes. Default true; false relies on the periodic re-check alone. */
  readonly watch?: boolean;
  /** Poll the filesystem instead of using inotify (NFS, some FUSE/overlay setups). */
  readonly usePolling?: boolean;
  /** Poll interval with usePolling. Default 1000 ms. */
  readonly pollIntervalMs?: number;
  /** Reads per refresh before giving up on a folder that keeps changing. Default 10. */
  readonly maxReadAttempts?: number;
  /** Pause before re-reading plain files that were mid-update. Default 20 ms. */
  readonly readRetryDelayMs?: number;
  /**
   * Every wait (debounce, re-check, retry backoff, expiry checks, ready() timeout) and every
   * reading of the time. Default systemClock; tests pass a fake one instead of sleeping.
   */
  readonly clock?: Clock;
}

/** What every source error class has: a kind to branch on, and a message naming the source. */
export type SourceError = Error & { readonly kind: string };

/** The kinds the reloader (and the snapshot reader under it) raises itself. */
export type ReloaderErrorKind = Extract<SourceErrorKind, 'config' | 'timeout' | 'closed' | 'missing' | 'unreadable' | 'inconsistent'>;

/** How a source names itself and its material in messages, so they read as they always have. */
export interface CredentialFolderWording {
  /** Starts every log message, and every message of the source's error class: 'filesource'. */
  readonly prefix: string;
  /** "no valid <material> in <folder> after 5 ms", "no valid <material> yet": 'credentials'. */
  readonly material: string;
  /** "closed before <materialWasLoaded> from <folder>": 'credentials were loaded'. */
  readonly materialWasLoaded: string;
  /** Logged (info) when new material is installed: 'loaded credentials'. */
  readonly loaded: string;
  /** Logged (warn) for a bad read while good material serves: 'ignoring invalid update, keeping current credentials'. */
  readonly keptCurrent: string;
  /** What a source that neither watches nor re-checks would never see: 'rotations'. */
  readonly unseenChanges: string;
}

/** What one source does its own way; everything else is the reloader's. */
export interface CredentialFolderDelegate<Parsed, Material, Err extends SourceError> {
  readonly wording: CredentialFolderWording;
  /** debounceMs when the options do not say. */
  readonly defaultDebounceMs: number;
  /** An error of the source's class. */
  createError(kind: ReloaderErrorKind, message: string, options?: { cause?: unknown }): Err;
  /** Whatever a read, parse or check threw, as the source's error class. */
  toError(err: unknown): Err;
  /** How one of the source's errors reads when quoted in another of its messages: without the source's name again. */
  quote(err: Err): string;
  /** Which of the folder's names to read; other files are not this source's business. */
  select(names: readonly string[]): readonly string[];
  /** Parses one snapshot's bytes or throws. Plain files that do not parse yet are re-read. */
  parse(files: ReadonlyMap<string, Buffer>): Parsed;
  /** Throws when parsed material must not be used now (expired, not yet valid). Not retried. */
  checkUsable(parsed: Parsed): void;
  /**
   * The material to install and announce, or undefined when `parsed` equals `previous` in
   * everything that matters: nothing is announced then, but the new bytes count as seen.
   */
  adopt(parsed: Parsed, previous: Material | undefined): Material | undefined;
  /** Log fields (after `folder`) for wording.loaded. */
  describe(material: Material, parsed: Parsed): Record<string, unknown>;
  /**
   * Warns about the current material's expiry when that is due. Returns how long until it wants
   * to look again, or undefined for never (the reloader waits that long in steps).
   */
  checkExpiry(material: Material): number | undefined;
  /** Emits 'update' on the source; a throw is logged, not propagated. */
  emitUpdate(material: Material): void;
  /** Emits 'error' on the source if anyone listens and says whether it did; a throw is logged. */
  emitError(error: Err): boolean;
}

const DEFAULT_RECHECK_INTERVAL_MS = 30_000;
const DEFAULT_MAX_READ_ATTEMPTS = 10;
const DEFAULT_READ_RETRY_DELAY_MS = 20;
const DEFAULT_POLL_INTERVAL_MS = 1000;
/**
 * After a failed read (nothing loaded yet, or an invalid update), re-read on this backoff even
 * without events: a writer may finish without any further event reaching us.
 */
const FAILURE_RETRY_MS = [1_000, 2_000, 4_000, 5_000] as const;
/** setTimeout's limit; longer waits are done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const UNCHANGED = Symbol('unchanged');

interface Candidate<Parsed> {
  readonly parsed: Parsed;
  readonly digest: string;
}

/** A duration option: `fallback` when absent, else a finite number >= `min`, or `configError`. */
export function checkDuration(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  configError: (message: string) => Error,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw configError(`${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** Content identity of a snapshot: same bytes under the same names means nothing changed. */
function digestOf(snapshot: FolderSnapshot): string {
  const hash = createHash('sha256');
  for (const name of [...snapshot.files.keys()].sort()) {
    const content = snapshot.files.get(name)!;
    hash.update(`${name}\0${content.length}\0`);
    hash.update(content);
  }
  return hash.digest('hex');
}

export class CredentialFolderReloader<Parsed, Material, Err extends SourceError> {
  private readonly prefix: string;
  private readonly debounceMs: number;
  private readonly recheckIntervalMs: number;
  private readonly maxReadAttempts: number;
  private readonly readRetryDelayMs: number;
  private readonly watcher: FolderWatcher | undefined;
  private readonly clock: Clock;

  private loaded: Material | undefined;
  private digest: string | undefined;
  private lastError: Err | undefined;
  /** Digest of the snapshot the current refresh read, so a repeated bad update is reported once. */
  private readDigest: string | undefined;
  private lastReported: string | undefined;
  /** Consecutive failed reads; drives the retry backoff. */
  private failures = 0;

  private readonly waiters: ReadyWaiters<Material, Err>;
  private debounceTimer: ClockTimer | undefined;
  private recheckTimer: ClockTimer | undefined;
  private expiryTimer: ClockTimer | undefined;
  private reloading: Promise<void> | undefined;
  private rerun = false;
  /**
   * Re-establish the watch before the next read. Only a change of the folder itself, a watch
   * error, the periodic re-check or refresh() need it; events for the files inside do not, and
   * skipping it keeps two filesystem round trips off every rotation.
   */
  private resyncWatch = true;
  private isClosed = false;
  private closing: Promise<void> | undefined;
  /** Cuts short a read that is pausing between attempts when the source closes. */
  private readonly stopReading = new AbortController();

  /**
   * Validates the options (throwing the delegate's 'config' error) and sets up the watch without
   * starting anything: call start() once the owning source is fully constructed, since the first
   * read may call the delegate before start() returns.
   */
  constructor(
    readonly folder: string,
    options: FolderReloadOptions,
    private readonly logger: Logger,
    private readonly delegate: CredentialFolderDelegate<Parsed, Material, Err>,
  ) {
    this.prefix = delegate.wording.prefix;
    this.clock = options.clock ?? systemClock;
    this.waiters = new ReadyWaiters(this.clock);
    const configError = (message: string): Err => delegate.createError('config', message);
    this.debounceMs = checkDuration('debounceMs', options.debounceMs, delegate.defaultDebounceMs, 0, configError);
    this.recheckIntervalMs = checkDuration('recheckIntervalMs', options.recheckIntervalMs, DEFAULT_RECHECK_INTERVAL_MS, 0, configError);
    this.maxReadAttempts = Math.floor(checkDuration('maxReadAttempts', options.maxReadAttempts, DEFAULT_MAX_READ_ATTEMPTS, 1, configError));
    this.readRetryDelayMs = checkDuration('readRetryDelayMs', options.readRetryDelayMs, DEFAULT_READ_RETRY_DELAY_MS, 0, configError);
    const pollIntervalMs = checkDuration('pollIntervalMs', options.pollIntervalMs, DEFAULT_POLL_INTERVAL_MS, 1, configError);
    const watch = options.watch ?? true;
    if (!watch && this.recheckIntervalMs === 0) {
      throw configError(`with watch: false, recheckIntervalMs must be > 0 or ${delegate.wording.unseenChanges} are never seen`);
    }
    this.watcher = watch
      ? new FolderWatcher(folder, {
          usePolling: options.usePolling ?? false,
          pollIntervalMs,
          logger,
          clock: this.clock,
          onChange: (folderChanged) => this.scheduleRefresh(folderChanged),
        })
      : undefined;
  }

  /** The last good material; undefined before the first valid load. */
  get material(): Material | undefined {
    return this.loaded;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Starts watching, then reads. Call once. */
  start(): void {
    void this.watchThenRead();
  }

  /** Resolves with the first valid material; rejects after `timeoutMs` saying what was wrong. */
  ready(timeoutMs: number): Promise<Material> {
    if (this.loaded !== undefined) return Promise.resolve(this.loaded);
    if (this.isClosed) return Promise.reject(this.closedError());
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) {
      return Promise.reject(this.delegate.createError('config', `ready() timeout must be a positive number, got ${String(timeoutMs)}`));
    }
    return this.waiters.wait(timeoutMs, () => this.timeoutError(timeoutMs));
  }

  /** Re-reads the folder now; resolves once a read that started after this call has finished. */
  refresh(): Promise<void> {
    return this.requestRead(true);
  }

  /** Stops watching and timers. Idempotent; material already loaded stays readable. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.isClosed = true;
      this.stopReading.abort();
      for (const timer of [this.debounceTimer, this.recheckTimer, this.expiryTimer]) this.clock.clearTimeout(timer);
      this.debounceTimer = this.recheckTimer = this.expiryTimer = undefined;
      this.waiters.rejectAll(this.closedError());
      const reloading = this.reloading;
      this.closing = (async () => {
        await this.watcher?.close();
        await reloading;
      })();
    }
    return this.closing;
  }

  private requestRead(resyncWatch: boolean): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    if (resyncWatch) this.resyncWatch = true;
    this.rerun = true;
    this.reloading ??= this.reloadLoop();
    return this.reloading;
  }

  private async watchThenRead(): Promise<void> {
    if (this.watcher !== undefined) {
      try {
        // Watch first, read second: a change between the two is then seen by the watch.
        await this.watcher.start();
      } catch (err) {
        this.logger.warn(
          { folder: this.folder, error: messageOf(err) },
          `${this.prefix}: cannot watch the credential folder; relying on the periodic re-check`,
        );
      }
    }
    await this.refresh();
  }

  private scheduleRefresh(folderChanged: boolean): void {
    if (folderChanged) this.resyncWatch = true;
    if (this.isClosed || this.debounceTimer !== undefined) return;
    // Not restarted by later events: a steady event stream must not postpone the read forever.
    this.debounceTimer = this.clock.setTimeout(() => {
      this.debounceTimer = undefined;
      void this.requestRead(false);
    }, this.debounceMs);
  }

  private async reloadLoop(): Promise<void> {
    try {
      while (this.rerun && !this.isClosed) {
        this.rerun = false;
        await this.reloadOnce();
      }
    } finally {
      // Cleared synchronously after the last `rerun` check, so a refresh() arriving later starts
      // a new loop instead of joining one that is about to end.
      this.reloading = undefined;
    }
    if (!this.isClosed) {
      this.checkExpiry();
      this.scheduleRecheck();
    }
  }

  private async reloadOnce(): Promise<void> {
    this.readDigest = undefined;
    if (this.resyncWatch && this.watcher !== undefined) {
      this.resyncWatch = false;
      try {
        await this.watcher.resync();
      } catch (err) {
        this.logger.debug({ folder: this.folder, error: messageOf(err) }, `${this.prefix}: re-establishing the watch failed`);
      }
    }
    let candidate: Candidate<Parsed> | typeof UNCHANGED;
    try {
      const { value } = await readSnapshot(this.folder, {
        select: (names) => this.delegate.select(names),
        parse: (snapshot) => this.evaluate(snapshot),
        maxAttempts: this.maxReadAttempts,
        retryDelayMs: this.readRetryDelayMs,
        clock: this.clock,
        signal: this.stopReading.signal,
        createError: (kind, message, errorOptions) => this.delegate.createError(kind, message, errorOptions),
      });
      candidate = value;
      if (candidate !== UNCHANGED) this.delegate.checkUsable(candidate.parsed);
    } catch (err) {
      if (!this.isClosed) this.reject(err);
      return;
    }
    if (this.isClosed) return;
    this.failures = 0;
    this.lastReported = undefined;
    this.lastError = undefined;
    if (candidate !== UNCHANGED) this.swap(candidate);
  }

  /** Runs inside the snapshot reader, so plain files that do not parse yet are re-read. */
  private evaluate(snapshot: FolderSnapshot): Candidate<Parsed> | typeof UNCHANGED {
    const digest = digestOf(snapshot);
    this.readDigest = digest;
    if (this.loaded !== undefined && digest === this.digest) return UNCHANGED;
    return { parsed: this.delegate.parse(snapshot.files), digest };
  }

  private swap(candidate: Candidate<Parsed>): void {
    const material = this.delegate.adopt(candidate.parsed, this.loaded);
    // Remembered even when nothing is announced, so the same bytes are not parsed again.
    this.digest = candidate.digest;
    if (material === undefined) return;
    this.loaded = material;
    this.logger.info({ folder: this.folder, ...this.delegate.describe(material, candidate.parsed) }, `${this.prefix}: ${this.delegate.wording.loaded}`);
    this.waiters.resolveAll(material);
    try {
      this.delegate.emitUpdate(material);
    } catch (err) {
      this.logger.error({ folder: this.folder, error: messageOf(err) }, `${this.prefix}: an 'update' listener threw`);
    }
  }

  private reject(err: unknown): void {
    const error = this.delegate.toError(err);
    this.lastError = error;
    this.failures++;
    // The same bad content (or the same missing folder) is reported once, not on every re-check.
    // Content is keyed by digest, not message: an expiry message names the current time.
    const key = this.readDigest === undefined ? error.message : `${this.readDigest}|${error.kind}`;
    if (key === this.lastReported) {
      this.logger.debug({ folder: this.folder, kind: error.kind, error: error.message }, `${this.prefix}: update still invalid`);
      return;
    }
    this.lastReported = key;
    try {
      if (this.delegate.emitError(error)) return;
    } catch (listenerErr) {
      this.logger.error({ folder: this.folder, error: messageOf(listenerErr) }, `${this.prefix}: an 'error' listener threw`);
      return;
    }
    const { wording } = this.delegate;
    this.logger.warn(
      { folder: this.folder, kind: error.kind, error: error.message },
      `${this.prefix}: ${this.loaded === undefined ? `no valid ${wording.material} yet` : wording.keptCurrent}`,
    );
  }

  private scheduleRecheck(): void {
    this.clock.clearTimeout(this.recheckTimer);
    this.recheckTimer = undefined;
    const interval =
      this.failures > 0
        ? Math.min(
            FAILURE_RETRY_MS[Math.min(this.failures, FAILURE_RETRY_MS.length) - 1]!,
            this.recheckIntervalMs || DEFAULT_RECHECK_INTERVAL_MS,
          )
        : this.recheckIntervalMs;
    if (interval === 0) return;
    this.recheckTimer = this.clock.setTimeout(() => {
      this.recheckTimer = undefined;
      void this.refresh();
    }, Math.min(interval, MAX_TIMER_MS));
  }

  private checkExpiry(): void {
    this.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.loaded === undefined || this.isClosed) return;
    const untilNextCheckMs = this.delegate.checkExpiry(this.loaded);
    if (untilNextCheckMs === undefined) return;
    // Stepped, never the exact (hours-long) wait: see expiryCheckDelay for the timer leak.
    this.expiryTimer = this.clock.setTimeout(() => this.checkExpiry(), expiryCheckDelay(untilNextCheckMs));
  }

  private timeoutError(timeoutMs: number): Err {
    const last = this.lastError;
    const why = last === undefined ? 'nothing could be read yet' : `last problem: ${this.delegate.quote(last)}`;
    return this.delegate.createError('timeout', `no valid ${this.delegate.wording.material} in ${this.folder} after ${timeoutMs} ms (${why})`, {
      cause: last,
    });
  }

  private closedError(): Err {
    return this.delegate.createError('closed', `closed before ${this.delegate.wording.materialWasLoaded} from ${this.folder}`);
  }
}
