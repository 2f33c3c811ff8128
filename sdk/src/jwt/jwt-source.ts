/**
 * The workload's JWT-SVID and the JWT bundles, read from the same credential folder as FileSource
 * (the driver writes `jwt-svid.token` and `<td>.jwt-bundle.json` into the same payload).
 *
 * Reading and watching are FileSource's: readSnapshot() gives one consistent generation through
 * `..data`, FolderWatcher says when to look again. The rule is FileSource's too: a bad or expired
 * update never replaces good material; the problem is reported ('error' event, or logger.warn when
 * nobody listens, so an unhandled 'error' cannot crash the application) and the last good token
 * and bundles keep serving. Token and bundles come from one payload and are swapped together.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../logger.js';
import { FileSourceError } from '../source/errors.js';
import { FolderWatcher } from '../source/folder-watcher.js';
import { locateCredentialFolder, type Environment } from '../source/locate.js';
import { readSnapshot, type FolderSnapshot } from '../source/snapshot.js';
import type { TrustDomain } from '../spiffe-id/trust-domain.js';
import { JwtSourceError, messageOf } from './errors.js';
import type { JwtBundle, JwtBundleSource } from './jwt-bundle.js';
import type { JwtBundleSet } from './jwt-bundle-set.js';
import { checkTokenFileName, parseJwtFiles, selectJwtFiles, type JwtMaterial, type ParsedJwtFiles } from './jwt-files.js';
import type { JwtSvidToken } from './jwt-svid.js';
import { expiryCheckDelay } from '../source/expiry-check-delay.js';

export interface JwtSourceOptions {
  /** Name of the token file in the folder. Default `jwt-svid.token` (the driver's default). */
  readonly tokenFile?: string;
  /**
   * Default true. false: bundles alone make the source ready, for services that only validate
   * JWT-SVIDs; current()/getToken() then throw until a token file appears.
   */
  readonly requireToken?: boolean;
  /** Where SPIFFE_CREDENTIAL_FOLDER is looked up when no folder is given. Default process.env. */
  readonly env?: Environment;
  /** Quiet period after a filesystem event before re-reading. Default 50 ms. */
  readonly debounceMs?: number;
  /** Re-read this often even without events. Default 30 s; 0 disables it while the material is good. */
  readonly recheckIntervalMs?: number;
  /** Watch the folder for changes. Default true. */
  readonly watch?: boolean;
  /** Poll instead of inotify (NFS, some FUSE/overlay setups). */
  readonly usePolling?: boolean;
  /** Poll interval with usePolling. Default 1000 ms. */
  readonly pollIntervalMs?: number;
  /** The clock used for token expiry. */
  readonly now?: () => Date;
  readonly logger?: Logger;
  /** Reads per refresh before giving up on a folder that keeps changing. Default 10. */
  readonly maxReadAttempts?: number;
  /** Pause before re-reading plain files that were mid-update. Default 20 ms. */
  readonly readRetryDelayMs?: number;
}

export interface JwtSourceEvents {
  /** New token and/or bundles, including the first load. */
  update: [material: JwtMaterial];
  /** A re-read failed or held an expired token; the previous material (if any) is still current. */
  error: [error: JwtSourceError];
}

export const DEFAULT_JWT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_DEBOUNCE_MS = 50;
const DEFAULT_RECHECK_INTERVAL_MS = 30_000;
/** Re-read on this backoff after a failed read: a writer may finish without another event reaching us. */
const FAILURE_RETRY_MS = [1_000, 2_000, 4_000, 5_000] as const;
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Candidate {
  readonly parsed: ParsedJwtFiles;
  readonly digest: string;
}
const UNCHANGED = Symbol('unchanged');

interface Waiter {
  resolve(material: JwtMaterial): void;
  reject(error: JwtSourceError): void;
  timer: NodeJS.Timeout;
}

function checkDuration(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new JwtSourceError('config', `${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
  return value;
}

function digestOf(snapshot: FolderSnapshot): string {
  const hash = createHash('sha256');
  for (const name of [...snapshot.files.keys()].sort()) {
    const content = snapshot.files.get(name)!;
    hash.update(`${name}\0${content.length}\0`);
    hash.update(content);
  }
  return hash.digest('hex');
}

/** FileSourceErrors from the shared reader are re-labelled so every message names this module. */
function asJwtSourceError(err: unknown): JwtSourceError {
  if (err instanceof JwtSourceError) return err;
  if (err instanceof FileSourceError) return new JwtSourceError(err.kind, err.message.replace(/^filesource: /, ''), { cause: err });
  return new JwtSourceError('invalid', messageOf(err), { cause: err });
}

export class JwtSource extends EventEmitter<JwtSourceEvents> implements JwtBundleSource {
  /** The absolute credential folder being read. */
  readonly folder: string;
  readonly tokenFile: string;

  private readonly requireToken: boolean;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly debounceMs: number;
  private readonly recheckIntervalMs: number;
  private readonly maxReadAttempts: number;
  private readonly readRetryDelayMs: number;
  private readonly watcher: FolderWatcher | undefined;

  private material: JwtMaterial | undefined;
  private digest: string | undefined;
  private lastError: JwtSourceError | undefined;
  private readDigest: string | undefined;
  private lastReported: string | undefined;
  private failures = 0;
  private warnedExpired: JwtSvidToken | undefined;

  private readonly waiters = new Set<Waiter>();
  private debounceTimer: NodeJS.Timeout | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  private rerun = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  /**
   * `folder`: the credential folder; defaults to $SPIFFE_CREDENTIAL_FOLDER. Throws JwtSourceError
   * ('config') for a missing folder setting or bad options. Loading starts at once; await ready().
   */
  constructor(folder?: string, options: JwtSourceOptions = {}) {
    super();
    this.setMaxListeners(0);
    try {
      this.folder = locateCredentialFolder(folder, options.env);
    } catch (err) {
      throw asJwtSourceError(err);
    }
    this.tokenFile = checkTokenFileName(options.tokenFile);
    this.requireToken = options.requireToken ?? true;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? (() => new Date());
    this.debounceMs = checkDuration('debounceMs', options.debounceMs, DEFAULT_DEBOUNCE_MS);
    this.recheckIntervalMs = checkDuration('recheckIntervalMs', options.recheckIntervalMs, DEFAULT_RECHECK_INTERVAL_MS);
    this.maxReadAttempts = Math.floor(checkDuration('maxReadAttempts', options.maxReadAttempts, 10, 1));
    this.readRetryDelayMs = checkDuration('readRetryDelayMs', options.readRetryDelayMs, 20);
    const pollIntervalMs = checkDuration('pollIntervalMs', options.pollIntervalMs, 1000, 1);
    const watch = options.watch ?? true;
    if (!watch && this.recheckIntervalMs === 0) {
      throw new JwtSourceError('config', 'with watch: false, recheckIntervalMs must be > 0 or refreshed tokens are never seen');
    }
    this.watcher = watch
      ? new FolderWatcher(this.folder, {
          usePolling: options.usePolling ?? false,
          pollIntervalMs,
          logger: this.logger,
          onChange: () => this.scheduleRefresh(),
        })
      : undefined;
    void this.start();
  }

  /** Resolves with the first valid material; rejects after `timeoutMs` saying what was wrong. */
  ready(timeoutMs: number = DEFAULT_JWT_READY_TIMEOUT_MS): Promise<JwtMaterial> {
    if (this.material !== undefined) return Promise.resolve(this.material);
    if (this.closed) return Promise.reject(this.closedError());
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) {
      return Promise.reject(new JwtSourceError('config', `ready() timeout must be a positive number, got ${String(timeoutMs)}`));
    }
    return new Promise<JwtMaterial>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(this.timeoutError(timeoutMs));
        }, Math.min(timeoutMs, MAX_TIMER_MS)),
      };
      this.waiters.add(waiter);
    });
  }

  /** Token and bundles as last loaded. Throws JwtSourceError ('not-ready') before the first load. */
  getMaterial(): JwtMaterial {
    if (this.material === undefined) {
      throw new JwtSourceError('not-ready', `no JWT-SVID material loaded yet from ${this.folder}; await ready() first`);
    }
    return this.material;
  }

  /** The current JWT-SVID (id, audience, expiresAt, token). Throws JwtSourceError when there is none. */
  current(): JwtSvidToken {
    const svid = this.getMaterial().svid;
    if (svid === null) throw new JwtSourceError('missing', `no JWT-SVID file ${this.tokenFile} in ${this.folder}`);
    return svid;
  }

  /**
   * The current serialized JWT-SVID, read fresh on every call so refreshed tokens are used at
   * once. With `audience`, throws JwtSourceError ('audience') unless the token carries it: sending
   * a token to a service it was not minted for would only be rejected there.
   */
  getToken(audience?: string): string {
    const svid = this.current();
    if (audience !== undefined && !svid.hasAudience(audience)) {
      throw new JwtSourceError(
        'audience',
        `the JWT-SVID in ${this.tokenFile} has audience ${JSON.stringify(svid.audience)}, not ${JSON.stringify(audience)}; ` +
          'add it to the volume attribute csi.spire.io/jwt-audiences',
      );
    }
    return svid.token;
  }

  /** Throws JwtSourceError ('not-ready') before the first load. */
  getJwtBundles(): JwtBundleSet {
    return this.getMaterial().bundles;
  }

  /** Undefined before the first load: an unknown domain is untrusted, which is the safe answer. */
  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined {
    return this.material?.bundles.get(td);
  }

  /** Re-reads the folder now; resolves once a read that started after this call has finished. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
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
        this.logger.warn({ folder: this.folder, error: messageOf(err) }, 'jwtsource: cannot watch the credential folder; relying on the periodic re-check');
      }
    }
    await this.refresh();
  }

  private scheduleRefresh(): void {
    if (this.closed || this.debounceTimer !== undefined) return;
    // Not restarted by later events: a steady event stream must not postpone the read forever.
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.refresh();
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
      this.reloading = undefined;
    }
    if (!this.closed) {
      this.checkExpiry();
      this.scheduleRecheck();
    }
  }

  private async reloadOnce(): Promise<void> {
    this.readDigest = undefined;
    try {
      await this.watcher?.resync();
    } catch (err) {
      this.logger.debug({ folder: this.folder, error: messageOf(err) }, 'jwtsource: re-establishing the watch failed');
    }
    let candidate: Candidate | typeof UNCHANGED;
    try {
      const { value } = await readSnapshot(this.folder, {
        select: (names) => selectJwtFiles(names, this.tokenFile),
        parse: (snapshot) => this.evaluate(snapshot),
        maxAttempts: this.maxReadAttempts,
        retryDelayMs: this.readRetryDelayMs,
      });
      candidate = value;
      if (candidate !== UNCHANGED) this.checkNotExpired(candidate.parsed.material.svid);
    } catch (err) {
      if (!this.closed) this.reject(err);
      return;
    }
    if (this.closed) return;
    this.failures = 0;
    this.lastReported = undefined;
    this.lastError = undefined;
    if (candidate !== UNCHANGED) this.swap(candidate);
  }

  /** Runs inside the snapshot reader, so plain files that do not parse yet are re-read. */
  private evaluate(snapshot: FolderSnapshot): Candidate | typeof UNCHANGED {
    const digest = digestOf(snapshot);
    this.readDigest = digest;
    if (this.material !== undefined && digest === this.digest) return UNCHANGED;
    return { parsed: parseJwtFiles(snapshot.files, this.tokenFile, this.requireToken), digest };
  }

  private checkNotExpired(svid: JwtSvidToken | null): void {
    const now = this.now();
    if (svid === null || !svid.isExpiredAt(now)) return;
    throw new JwtSourceError(
      'expired',
      `JWT-SVID ${svid.id.toString()} in ${this.tokenFile} expired at ${svid.expiresAt.toISOString()} (now ${now.toISOString()})`,
    );
  }

  private swap(candidate: Candidate): void {
    const next = candidate.parsed.material;
    const previous = this.material;
    this.digest = candidate.digest;
    // Same token and keys under different bytes (whitespace, key order): nothing to announce.
    if (previous !== undefined && previous.svid?.token === next.svid?.token && previous.bundles.equals(next.bundles)) return;
    const material: JwtMaterial = Object.freeze({ ...next });
    this.material = material;
    this.logger.info(
      {
        folder: this.folder,
        files: candidate.parsed.sources,
        spiffeId: material.svid?.id.toString(),
        audience: material.svid?.audience,
        expiresAt: material.svid?.expiresAt.toISOString(),
        trustDomains: material.bundles.trustDomains().map((td) => td.name),
      },
      'jwtsource: loaded JWT-SVID material',
    );
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(material);
    }
    this.waiters.clear();
    try {
      this.emit('update', material);
    } catch (err) {
      this.logger.error({ folder: this.folder, error: messageOf(err) }, "jwtsource: an 'update' listener threw");
    }
  }

  private reject(err: unknown): void {
    const error = asJwtSourceError(err);
    this.lastError = error;
    this.failures++;
    // The same bad content is reported once, not on every re-check; an expiry message names the
    // current time, so content is keyed by digest rather than by message.
    const key = this.readDigest === undefined ? error.message : `${this.readDigest}|${error.kind}`;
    if (key === this.lastReported) {
      this.logger.debug({ folder: this.folder, kind: error.kind, error: error.message }, 'jwtsource: update still invalid');
      return;
    }
    this.lastReported = key;
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', error);
      } catch (listenerErr) {
        this.logger.error({ folder: this.folder, error: messageOf(listenerErr) }, "jwtsource: an 'error' listener threw");
      }
      return;
    }
    this.logger.warn(
      { folder: this.folder, kind: error.kind, error: error.message },
      this.material === undefined ? 'jwtsource: no valid JWT-SVID material yet' : 'jwtsource: ignoring invalid update, keeping the current JWT-SVID material',
    );
  }

  private scheduleRecheck(): void {
    clearTimeout(this.recheckTimer);
    this.recheckTimer = undefined;
    const interval =
      this.failures > 0
        ? Math.min(FAILURE_RETRY_MS[Math.min(this.failures, FAILURE_RETRY_MS.length) - 1]!, this.recheckIntervalMs || DEFAULT_RECHECK_INTERVAL_MS)
        : this.recheckIntervalMs;
    if (interval === 0) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = undefined;
      void this.refresh();
    }, Math.min(interval, MAX_TIMER_MS));
    this.recheckTimer.unref();
  }

  /** Logs once when the current token expires without a replacement: every request will now fail. */
  private checkExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const svid = this.material?.svid;
    if (svid === undefined || svid === null || this.closed || this.warnedExpired === svid) return;
    const remaining = svid.expiresAt.getTime() - this.now().getTime();
    if (remaining <= 0) {
      this.warnedExpired = svid;
      this.logger.error(
        { folder: this.folder, spiffeId: svid.id.toString(), expiresAt: svid.expiresAt.toISOString() },
        `jwtsource: the JWT-SVID expired and no newer one arrived in ${this.folder}`,
      );
      return;
    }
    this.expiryTimer = setTimeout(() => this.checkExpiry(), expiryCheckDelay(remaining + 1));
    this.expiryTimer.unref();
  }

  private timeoutError(timeoutMs: number): JwtSourceError {
    const last = this.lastError;
    const why = last === undefined ? 'nothing could be read yet' : `last problem: ${last.message.replace(/^jwtsource: /, '')}`;
    return new JwtSourceError('timeout', `no valid JWT-SVID material in ${this.folder} after ${timeoutMs} ms (${why})`, { cause: last });
  }

  private closedError(): JwtSourceError {
    return new JwtSourceError('closed', `closed before JWT-SVID material was loaded from ${this.folder}`);
  }
}
