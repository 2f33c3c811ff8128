/**
 * An X509Source fed by a credential folder (our CSI driver's volume, a Kubernetes projected volume,
 * spiffe-helper output, ...).
 *
 * The rule that shapes everything here: a bad read never replaces good material. Every re-read
 * takes one consistent snapshot, parses and validates it completely, and only then swaps; anything
 * else is reported ('error' event, or logger.warn when nobody listens so an unhandled 'error'
 * cannot crash the application) while the last good credentials keep serving.
 *
 * Re-reads are triggered by filesystem events (debounced, since one rotation is a burst of them),
 * by a periodic re-check that covers missed events, and by refresh().
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../logger.js';
import type { TrustDomain } from '../spiffe-id/trust-domain.js';
import type { X509Bundle } from '../x509/bundle.js';
import type { X509BundleSet } from '../x509/bundle-set.js';
import type { X509Svid } from '../x509/svid.js';
import { parseCredentialFiles, resolveSplitFileNames, checkLayout, selectCredentialFiles, type CredentialFilesOptions, type ParsedCredentials } from './credential-files.js';
import { FileSourceError, messageOf } from './errors.js';
import { expiryWarningFor } from './expiry.js';
import { FolderWatcher } from './folder-watcher.js';
import { locateCredentialFolder, type Environment } from './locate.js';
import { readSnapshot, type FolderSnapshot } from './snapshot.js';
import { expiryCheckDelay } from './expiry-check-delay.js';
import type { X509Material, X509Source } from './x509-source.js';

export interface FileSourceOptions extends CredentialFilesOptions {
  /** Where SPIFFE_CREDENTIAL_FOLDER is looked up when no folder is given. Default process.env. */
  readonly env?: Environment;
  /**
   * Quiet period after a filesystem event before re-reading. Default 10 ms: the driver's (and
   * kubelet's) update is a single `..data` rename, and a read that lands mid-update is retried.
   */
  readonly debounceMs?: number;
  /**
   * Re-read this often even without events (missed inotify events, folders replaced in ways a
   * watch cannot follow). Default 30 s. 0 disables it while the current credentials are good;
   * failed reads are still retried after 1 s, 2 s, 4 s, then every 5 s (at most this interval).
   */
  readonly recheckIntervalMs?: number;
  /** Watch the folder for changes. Default true; false relies on the periodic re-check alone. */
  readonly watch?: boolean;
  /** Poll the filesystem instead of using inotify (NFS, some FUSE/overlay setups). */
  readonly usePolling?: boolean;
  /** Poll interval with usePolling. Default 1000 ms. */
  readonly pollIntervalMs?: number;
  /**
   * Emit 'warning' when the current SVID is this close to notAfter and no newer one arrived.
   * Default: one third of the SVID's lifetime (SPIRE rotates at one half, so the rotation is late).
   */
  readonly expiryWarningMs?: number;
  /** The clock used for validity and expiry checks. */
  readonly now?: () => Date;
  readonly logger?: Logger;
  /** Reads per refresh before giving up on a folder that keeps changing. Default 10. */
  readonly maxReadAttempts?: number;
  /** Pause before re-reading plain files that were mid-update. Default 20 ms. */
  readonly readRetryDelayMs?: number;
}

export interface FileSourceWarning {
  /** `expiring`: within the warning window of notAfter. `expired`: past notAfter. */
  readonly kind: 'expiring' | 'expired';
  readonly message: string;
  readonly folder: string;
  readonly spiffeId: string;
  readonly serialNumber: string;
  readonly notAfter: Date;
}

export interface FileSourceEvents {
  /** New material, including the first load. */
  update: [material: X509Material];
  /** A re-read failed; the previous material (if any) is still current. */
  error: [error: FileSourceError];
  /** The current SVID is about to expire, or has, and nothing newer arrived. Once per SVID each. */
  warning: [warning: FileSourceWarning];
}

export const DEFAULT_READY_TIMEOUT_MS = 30_000;
export const DEFAULT_DEBOUNCE_MS = 10;
const DEFAULT_RECHECK_INTERVAL_MS = 30_000;
/**
 * After a failed read (nothing loaded yet, or an invalid update), re-read on this backoff even
 * without events: a writer may finish without any further event reaching us.
 */
const FAILURE_RETRY_MS = [1_000, 2_000, 4_000, 5_000] as const;
/** setTimeout's limit; longer waits are done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Candidate {
  readonly parsed: ParsedCredentials;
  readonly digest: string;
}
const UNCHANGED = Symbol('unchanged');

interface Waiter {
  resolve(material: X509Material): void;
  reject(error: FileSourceError): void;
  timer: NodeJS.Timeout;
}

function checkDuration(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new FileSourceError('config', `${name} must be a finite number >= ${min}, got ${String(value)}`);
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

export class FileSource extends EventEmitter<FileSourceEvents> implements X509Source {
  /** The absolute credential folder being read. */
  readonly folder: string;

  private readonly fileOptions: CredentialFilesOptions;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly debounceMs: number;
  private readonly recheckIntervalMs: number;
  private readonly expiryWarningMs: number | undefined;
  private readonly maxReadAttempts: number;
  private readonly readRetryDelayMs: number;
  private readonly watcher: FolderWatcher | undefined;

  private material: X509Material | undefined;
  private digest: string | undefined;
  private lastError: FileSourceError | undefined;
  /** Digest of the snapshot the current refresh read, so a repeated bad update is reported once. */
  private readDigest: string | undefined;
  private lastReported: string | undefined;
  /** Consecutive failed reads; drives the retry backoff. */
  private failures = 0;
  private warnedExpiring: X509Svid | undefined;
  private warnedExpired: X509Svid | undefined;

  private readonly waiters = new Set<Waiter>();
  private debounceTimer: NodeJS.Timeout | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  private rerun = false;
  /**
   * Re-establish the watch before the next read. Only a change of the folder itself, a watch
   * error, the periodic re-check or refresh() need it; events for the files inside do not, and
   * skipping it keeps two filesystem round trips off every rotation.
   */
  private resyncWatch = true;
  private closed = false;
  private closing: Promise<void> | undefined;

  /**
   * `folder`: the credential folder; defaults to $SPIFFE_CREDENTIAL_FOLDER (there is no default
   * folder). Throws a FileSourceError ('config') for a missing folder setting or bad options.
   * Loading starts at once; await ready() for the first valid material.
   */
  constructor(folder?: string, options: FileSourceOptions = {}) {
    super();
    // Every server, agent and dispatcher subscribes; dozens of listeners is normal, not a leak.
    this.setMaxListeners(0);
    this.folder = locateCredentialFolder(folder, options.env);
    this.fileOptions = { layout: checkLayout(options.layout), files: resolveSplitFileNames(options.files) };
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? (() => new Date());
    this.debounceMs = checkDuration('debounceMs', options.debounceMs, DEFAULT_DEBOUNCE_MS);
    this.recheckIntervalMs = checkDuration('recheckIntervalMs', options.recheckIntervalMs, DEFAULT_RECHECK_INTERVAL_MS);
    this.expiryWarningMs =
      options.expiryWarningMs === undefined ? undefined : checkDuration('expiryWarningMs', options.expiryWarningMs, 0);
    this.maxReadAttempts = Math.floor(checkDuration('maxReadAttempts', options.maxReadAttempts, 10, 1));
    this.readRetryDelayMs = checkDuration('readRetryDelayMs', options.readRetryDelayMs, 20);
    const pollIntervalMs = checkDuration('pollIntervalMs', options.pollIntervalMs, 1000, 1);
    const watch = options.watch ?? true;
    if (!watch && this.recheckIntervalMs === 0) {
      throw new FileSourceError('config', 'with watch: false, recheckIntervalMs must be > 0 or rotations are never seen');
    }
    this.watcher = watch
      ? new FolderWatcher(this.folder, {
          usePolling: options.usePolling ?? false,
          pollIntervalMs,
          logger: this.logger,
          onChange: (folderChanged) => this.scheduleRefresh(folderChanged),
        })
      : undefined;
    void this.start();
  }

  /** Resolves with the first valid material; rejects after `timeoutMs` saying what was wrong. */
  ready(timeoutMs: number = DEFAULT_READY_TIMEOUT_MS): Promise<X509Material> {
    if (this.material !== undefined) return Promise.resolve(this.material);
    if (this.closed) return Promise.reject(this.closedError());
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) {
      return Promise.reject(new FileSourceError('config', `ready() timeout must be a positive number, got ${String(timeoutMs)}`));
    }
    return new Promise<X509Material>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        // Not unref'd: awaiting ready() should keep the process alive until it settles.
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(this.timeoutError(timeoutMs));
        }, Math.min(timeoutMs, MAX_TIMER_MS)),
      };
      this.waiters.add(waiter);
    });
  }

  /** The current material. Throws a FileSourceError ('not-ready') before the first valid load. */
  current(): X509Material {
    if (this.material === undefined) {
      throw new FileSourceError('not-ready', `no credentials loaded yet from ${this.folder}; await ready() first`);
    }
    return this.material;
  }

  getX509Svid(): X509Svid {
    return this.current().svid;
  }

  getX509Bundles(): X509BundleSet {
    return this.current().bundles;
  }

  /** Undefined before the first load: an unknown domain is untrusted, which is the safe answer. */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.material?.bundles.get(td);
  }

  /** Re-reads the folder now; resolves once a read that started after this call has finished. */
  refresh(): Promise<void> {
    return this.requestRead(true);
  }

  private requestRead(resyncWatch: boolean): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (resyncWatch) this.resyncWatch = true;
    this.rerun = true;
    this.reloading ??= this.reloadLoop();
    return this.reloading;
  }

  /** Stops watching and timers. Idempotent; material already loaded stays readable. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.closed = true;
      for (const timer of [this.debounceTimer, this.recheckTimer, this.expiryTimer]) clearTimeout(timer);
      this.debounceTimer = this.recheckTimer = this.expiryTimer = undefined;
      for (const waiter of this.waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(this.closedError());
      }
      this.waiters.clear();
      const reloading = this.reloading;
      this.closing = (async () => {
        await this.watcher?.close();
        await reloading;
      })();
    }
    return this.closing;
  }

  private async start(): Promise<void> {
    if (this.watcher !== undefined) {
      try {
        // Watch first, read second: a change between the two is then seen by the watch.
        await this.watcher.start();
      } catch (err) {
        this.logger.warn(
          { folder: this.folder, error: messageOf(err) },
          'filesource: cannot watch the credential folder; relying on the periodic re-check',
        );
      }
    }
    await this.refresh();
  }

  private scheduleRefresh(folderChanged: boolean): void {
    if (folderChanged) this.resyncWatch = true;
    if (this.closed || this.debounceTimer !== undefined) return;
    // Not restarted by later events: a steady event stream must not postpone the read forever.
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.requestRead(false);
    }, this.debounceMs);
    this.debounceTimer.unref();
  }

  private async reloadLoop(): Promise<void> {
    try {
      while (this.rerun && !this.closed) {
        this.rerun = false;
        await this.reloadOnce();
      }
    } finally {
      // Cleared synchronously after the last `rerun` check, so a refresh() arriving later starts
      // a new loop instead of joining one that is about to end.
      this.reloading = undefined;
    }
    if (!this.closed) {
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
        this.logger.debug({ folder: this.folder, error: messageOf(err) }, 'filesource: re-establishing the watch failed');
      }
    }
    let candidate: Candidate | typeof UNCHANGED;
    try {
      const { value } = await readSnapshot(this.folder, {
        select: (names) => selectCredentialFiles(names, this.fileOptions),
        parse: (snapshot) => this.evaluate(snapshot),
        maxAttempts: this.maxReadAttempts,
        retryDelayMs: this.readRetryDelayMs,
      });
      candidate = value;
      if (candidate !== UNCHANGED) this.checkValidity(candidate.parsed.material.svid);
    } catch (err) {
      if (!this.closed) this.reject(err);
      return;
    }
    if (this.closed) return;
    this.failures = 0;
    this.lastReported = undefined;
    if (candidate === UNCHANGED) {
      this.lastError = undefined;
      return;
    }
    this.swap(candidate);
  }

  /** Runs inside the snapshot reader, so plain files that do not parse yet are re-read. */
  private evaluate(snapshot: FolderSnapshot): Candidate | typeof UNCHANGED {
    const digest = digestOf(snapshot);
    this.readDigest = digest;
    if (this.material !== undefined && digest === this.digest) return UNCHANGED;
    return { parsed: parseCredentialFiles(snapshot.files, this.fileOptions), digest };
  }

  private checkValidity(svid: X509Svid): void {
    const now = this.now();
    if (svid.isValidAt(now)) return;
    const leafState = now < svid.notBefore ? 'not valid yet' : now > svid.notAfter ? 'expired' : 'valid';
    const detail = leafState === 'valid' ? 'a certificate in its chain is outside its validity period' : `the leaf is ${leafState}`;
    throw new FileSourceError(
      'expired',
      `X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) is not usable at ${now.toISOString()}: ${detail} ` +
        `(leaf valid ${svid.notBefore.toISOString()} to ${svid.notAfter.toISOString()})`,
    );
  }

  private swap(candidate: Candidate): void {
    const { layout, sources } = candidate.parsed;
    const parsed = candidate.parsed.material;
    const previous = this.material?.bundles;
    // An SVID rotation usually leaves the bundles as they were: keeping the previous (immutable)
    // set then keeps everything scoped to it, such as remembered peer verifications, valid.
    const bundles = previous !== undefined && previous.equals(parsed.bundles) ? previous : parsed.bundles;
    const material: X509Material = Object.freeze({ svid: parsed.svid, bundles });
    this.material = material;
    this.digest = candidate.digest;
    this.lastError = undefined;
    this.logger.info(
      {
        folder: this.folder,
        layout,
        files: sources,
        spiffeId: material.svid.id.toString(),
        serialNumber: material.svid.serialNumber,
        notAfter: material.svid.notAfter.toISOString(),
        trustDomains: material.bundles.trustDomains().map((td) => td.name),
      },
      'filesource: loaded credentials',
    );
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(material);
    }
    this.waiters.clear();
    try {
      this.emit('update', material);
    } catch (err) {
      this.logger.error({ folder: this.folder, error: messageOf(err) }, "filesource: an 'update' listener threw");
    }
  }

  private reject(err: unknown): void {
    const error = err instanceof FileSourceError ? err : new FileSourceError('invalid', messageOf(err), { cause: err });
    this.lastError = error;
    this.failures++;
    // The same bad content (or the same missing folder) is reported once, not on every re-check.
    // Content is keyed by digest, not message: an expiry message names the current time.
    const key = this.readDigest === undefined ? error.message : `${this.readDigest}|${error.kind}`;
    if (key === this.lastReported) {
      this.logger.debug({ folder: this.folder, kind: error.kind, error: error.message }, 'filesource: update still invalid');
      return;
    }
    this.lastReported = key;
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', error);
      } catch (listenerErr) {
        this.logger.error({ folder: this.folder, error: messageOf(listenerErr) }, "filesource: an 'error' listener threw");
      }
      return;
    }
    this.logger.warn(
      { folder: this.folder, kind: error.kind, error: error.message },
      this.material === undefined ? 'filesource: no valid credentials yet' : 'filesource: ignoring invalid update, keeping current credentials',
    );
  }

  private scheduleRecheck(): void {
    clearTimeout(this.recheckTimer);
    this.recheckTimer = undefined;
    const interval =
      this.failures > 0
        ? Math.min(
            FAILURE_RETRY_MS[Math.min(this.failures, FAILURE_RETRY_MS.length) - 1]!,
            this.recheckIntervalMs || DEFAULT_RECHECK_INTERVAL_MS,
          )
        : this.recheckIntervalMs;
    if (interval === 0) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = undefined;
      void this.refresh();
    }, Math.min(interval, MAX_TIMER_MS));
    this.recheckTimer.unref();
  }

  private checkExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const svid = this.material?.svid;
    if (svid === undefined || this.closed) return;
    const { warnAt, notAfter } = expiryWarningFor(svid, this.expiryWarningMs);
    const now = this.now().getTime();
    if (now > notAfter.getTime() && this.warnedExpired !== svid) {
      this.warnedExpired = this.warnedExpiring = svid;
      this.warn('expired', svid, `X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) expired at ${notAfter.toISOString()} and no newer one arrived in ${this.folder}`);
    } else if (now >= warnAt.getTime() && this.warnedExpiring !== svid) {
      this.warnedExpiring = svid;
      this.warn('expiring', svid, `X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) expires at ${notAfter.toISOString()} and no newer one arrived in ${this.folder}`);
    }
    const next = this.warnedExpiring !== svid ? warnAt : this.warnedExpired !== svid ? notAfter : undefined;
    if (next === undefined) return;
    // +1: notAfter is inclusive, "expired" starts just after it.
    this.expiryTimer = setTimeout(() => this.checkExpiry(), expiryCheckDelay(next.getTime() - now + 1));
    this.expiryTimer.unref();
  }

  private warn(kind: FileSourceWarning['kind'], svid: X509Svid, message: string): void {
    const warning: FileSourceWarning = {
      kind,
      message: `filesource: ${message}`,
      folder: this.folder,
      spiffeId: svid.id.toString(),
      serialNumber: svid.serialNumber,
      notAfter: svid.notAfter,
    };
    const log = { folder: this.folder, spiffeId: warning.spiffeId, serialNumber: warning.serialNumber, notAfter: svid.notAfter.toISOString() };
    if (kind === 'expired') this.logger.error(log, warning.message);
    else this.logger.warn(log, warning.message);
    try {
      this.emit('warning', warning);
    } catch (err) {
      this.logger.error({ folder: this.folder, error: messageOf(err) }, "filesource: a 'warning' listener threw");
    }
  }

  private timeoutError(timeoutMs: number): FileSourceError {
    const last = this.lastError;
    const why = last === undefined ? 'nothing could be read yet' : `last problem: ${last.message.replace(/^filesource: /, '')}`;
    return new FileSourceError('timeout', `no valid credentials in ${this.folder} after ${timeoutMs} ms (${why})`, {
      cause: last,
    });
  }

  private closedError(): FileSourceError {
    return new FileSourceError('closed', `closed before credentials were loaded from ${this.folder}`);
  }
}
