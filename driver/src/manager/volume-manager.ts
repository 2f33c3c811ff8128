import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '@spire-csi/sdk/internal';
import { systemClock, type Clock } from '@spire-csi/sdk/clock';
import type { VolumePublisher } from './volume-publisher.js';
import type { BackoffOptions } from '../retry/backoff.js';
import type { IdentityBackend } from '../identity/identity-backend.js';
import { ConcurrencyLimiter, DEFAULT_WRITE_CONCURRENCY } from '../concurrency/concurrency-limiter.js';
import { VolumeFiles, defaultWriterFactory, tmpfsWriterFactory, type WriterFactory } from '../storage/volume-files.js';
import { KeyedMutex, mapConcurrent } from '../concurrency/keyed-mutex.js';
import { childLogger, type DriverLogger } from '../logging.js';
import { DEFAULT_TMPFS_SIZE_BYTES, type Mounter, type TmpfsOptions } from '../mount/mounter.js';
import { PemMemo } from '../storage/pem-memo.js';
import { ManagerError, SHUTTING_DOWN_MESSAGE, asManagerError, notReadyError, refusedError } from './errors.js';
import { SvidValidationCache } from '../session/svid-validation-cache.js';
import { emptyMountDir, exists, hasPayload, makeMountDir, podDirOf, removeMountDir } from '../target-path/target-path.js';
import { checkTmpfsRoot, type MountedTmpfs } from '../mount/tmpfs-check.js';
import { VolumeEvents } from '../volume/volume-events.js';
import { VolumeSession, type WaitOutcome } from '../session/volume-session.js';
import { diffSpecs, sameSpec, type VolumeSpec } from '../volume/volume-spec.js';
import { VolumeStoreError, type VolumeRecord, type VolumeStore } from '../metadata/volume-store.js';

export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;
export const DEFAULT_RESUME_CONCURRENCY = 64;
const CLEANUP_QUIET_MS = 100;
const CLEANUP_MAX_DELAY_MS = 3000;

export interface VolumeManagerOptions {
  readonly store: VolumeStore;
  readonly mounter: Mounter;
  readonly identity: IdentityBackend;
  readonly logger?: DriverLogger;
  readonly publishTimeoutMs?: number;
  readonly tmpfsSizeBytes?: number;
  /** Time for records, validity checks, publish timeouts, retries and JWT refreshes. */
  readonly clock?: Clock;
  /** Overrides the writer chosen by `targetsOnTmpfs`. */
  readonly writerFactory?: WriterFactory;
  /**
   * The mounter really mounts a tmpfs at each target (default true, the Mounter contract): files are
   * then written without fsync and with synchronous calls. False for a stand-in mounter that only
   * makes directories on a disk.
   */
  readonly targetsOnTmpfs?: boolean;
  /** Most volume writes in flight at once across all volumes (default 32). */
  readonly writeConcurrency?: number;
  readonly resumeConcurrency?: number;
  /**
   * Checks a record read back on restart as strictly as a publish request (wired to the CSI
   * validation); a record that fails is left alone as corrupt: nothing mounted, subscribed or removed.
   */
  readonly checkRecord?: (spec: VolumeSpec) => Promise<void>;
  /** First delay before rewriting a volume whose files could not be written. */
  readonly retryDelayMs?: number;
  /** Uniform [0, 1) for JWT refresh jitter and retry backoff. */
  readonly random?: () => number;
  /** Retry schedule after a failed JWT-SVID fetch. */
  readonly jwtRetry?: BackoffOptions;
}

type ResumeOutcome = 'resumed' | 'removed' | 'failed' | 'corrupt' | 'skipped';

interface PendingResume {
  /** Lets the resume start now (idempotent). */
  readonly kick: () => void;
  readonly outcome: Promise<ResumeOutcome>;
}

export interface ResumeSummary {
  readonly resumed: number;
  readonly removed: number;
  readonly failed: number;
  readonly corrupt: number;
}

/**
 * Owns the lifecycle of every volume: record, mount, identity session, cleanup. Operations on one
 * volume are serialized; different volumes proceed concurrently.
 */
export class VolumeManager implements VolumePublisher {
  readonly events = new VolumeEvents();
  private readonly opts: VolumeManagerOptions;
  private readonly logger: DriverLogger;
  private readonly clock: Clock;
  private readonly mutex = new KeyedMutex();
  private readonly sessions = new Map<string, VolumeSession>();
  private readonly pendingResumes = new Map<string, PendingResume>();
  private readonly svidCache = new SvidValidationCache();
  private readonly pem = new PemMemo();
  private readonly writeSlots: ConcurrencyLimiter;
  private readonly writerFactory: WriterFactory;
  private stopped = false;

  constructor(options: VolumeManagerOptions) {
    this.opts = options;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    // Replaced payload directories are removed once writes have been quiet for a moment (at most a
    // few seconds later): a rotation reaches every folder first, then the old copies go. This
    // housekeeping runs on real time, not the injected clock: it never changes what a pod reads.
    this.writeSlots = new ConcurrencyLimiter(options.writeConcurrency ?? DEFAULT_WRITE_CONCURRENCY, {
      quietMs: CLEANUP_QUIET_MS,
      maxDelayMs: CLEANUP_MAX_DELAY_MS,
    });
    const deferCleanup = (task: () => Promise<void>): void => void this.writeSlots.background(task);
    this.writerFactory =
      options.writerFactory ?? (options.targetsOnTmpfs === false ? defaultWriterFactory : tmpfsWriterFactory(deferCleanup));
  }

  get volumeCount(): number {
    return this.sessions.size;
  }

  get(volumeId: string): VolumeSpec | undefined {
    return this.sessions.get(volumeId)?.spec;
  }

  /** The soonest not-after among the SVIDs currently served. */
  earliestExpiry(): Date | undefined {
    let earliest: Date | undefined;
    for (const session of this.sessions.values()) {
      const notAfter = session.notAfter;
      if (notAfter !== undefined && (earliest === undefined || notAfter < earliest)) earliest = notAfter;
    }
    return earliest;
  }

  async publish(spec: VolumeSpec, signal?: AbortSignal): Promise<void> {
    const started = performance.now();
    this.pendingResumes.get(spec.volumeId)?.kick();
    await this.mutex.run(spec.volumeId, () => this.publishLocked(spec, signal)).catch((err: unknown) => {
      throw asManagerError(err, `publishing volume ${spec.volumeId}`);
    });
    this.events.emit('published', { volumeId: spec.volumeId, durationMs: performance.now() - started });
  }

  private async publishLocked(spec: VolumeSpec, signal: AbortSignal | undefined): Promise<void> {
    if (this.stopped) throw new ManagerError('shutting-down', SHUTTING_DOWN_MESSAGE);
    const log = this.volumeLogger(spec);
    const existing = await this.readRecord(spec.volumeId, log);
    if (existing !== undefined && !sameSpec(existing.spec, spec)) {
      throw new ManagerError(
        'conflict',
        `volume ${spec.volumeId} is already published with different parameters: ${diffSpecs(existing.spec, spec).join('; ')}`,
      );
    }
    const owner = existing === undefined ? this.ownerOfTarget(spec.targetPath, spec.volumeId) : undefined;
    if (owner !== undefined) {
      throw new ManagerError(
        'conflict',
        `target_path ${JSON.stringify(spec.targetPath)} already holds volume ${owner}; publish volume ${spec.volumeId} at its own target path`,
      );
    }
    const mounted = await this.internal('checking the mount', () => this.opts.mounter.isMountPoint(spec.targetPath));
    let session = this.sessions.get(spec.volumeId);
    if (session !== undefined && !mounted) {
      log.warn({}, 'the tmpfs disappeared; mounting it again');
      await session.close();
      this.sessions.delete(spec.volumeId);
      session = undefined;
    }
    if (existing !== undefined && mounted && (await hasPayload(spec.targetPath))) {
      if (session === undefined) this.startSession(spec, log, await this.adoptTmpfs(spec.targetPath));
    } else if (session !== undefined) {
      // A resumed volume still waiting for data: wait, but a timeout must not tear down a running pod's volume.
      const outcome = await session.waitReady(this.timeoutMs, signal);
      if (outcome !== 'ready') throw this.notReady(spec, session, outcome);
    } else {
      await this.freshPublish(spec, mounted, log, signal);
    }
  }

  async unpublish(volumeId: string, targetPath: string): Promise<void> {
    this.pendingResumes.get(volumeId)?.kick();
    await this.mutex.run(volumeId, async () => {
      const log = childLogger(this.logger, { volumeId });
      const record = await this.readRecord(volumeId, log);
      const owner = record === undefined ? this.ownerOfTarget(targetPath, volumeId) : undefined;
      if (owner !== undefined) {
        // Never unmount another volume's tmpfs because a request named its path with a wrong id.
        throw new ManagerError(
          'wrong-volume',
          `target_path ${JSON.stringify(targetPath)} holds volume ${owner}, not ${volumeId}; nothing was changed`,
        );
      }
      const targets = new Set([targetPath]);
      if (record !== undefined && record.spec.targetPath !== targetPath) {
        log.warn({ recorded: record.spec.targetPath, targetPath }, 'unpublish names another target path than the record; cleaning both');
        targets.add(record.spec.targetPath);
      }
      try {
        await this.teardown(volumeId, [...targets]);
      } catch (err) {
        this.events.emitError('unpublish-failed', volumeId);
        throw err;
      }
      log.info({ targetPath }, 'volume unpublished');
    });
  }

  /** Picks up every recorded volume after a restart and resolves when all are done. */
  async resumeAll(): Promise<ResumeSummary> {
    return (await this.beginResume()).done;
  }

  /**
   * Lists the records and claims each volume's lock for its resume, then returns: the CSI socket
   * can serve from here on. A publish or unpublish of a volume still waiting to resume queues
   * behind that volume's resume alone (and moves it to the front), so an unpublish never races
   * its own resume; other volumes are not held up. `done` resolves when every record is handled.
   */
  async beginResume(): Promise<{ readonly done: Promise<ResumeSummary> }> {
    const listing = await this.internal('listing volume records', () => this.opts.store.list());
    for (const bad of listing.corrupt) {
      this.logger.error({ file: bad.file, reason: bad.reason }, 'skipping an unreadable volume record');
      this.events.emitError('corrupt-record');
    }
    const pending = listing.records.map((record) => this.queueResume(record));
    const limit = this.opts.resumeConcurrency ?? DEFAULT_RESUME_CONCURRENCY;
    const done = (async (): Promise<ResumeSummary> => {
      // Workers start the queued resumes in record order; one already started (kicked by a
      // request for its volume) is simply waited for.
      const outcomes = await mapConcurrent(pending, limit, (item) => {
        item.kick();
        return item.outcome;
      });
      const count = (what: ResumeOutcome): number => outcomes.filter((o) => o === what).length;
      const summary: ResumeSummary = {
        resumed: count('resumed'),
        removed: count('removed'),
        failed: count('failed'),
        corrupt: listing.corrupt.length + count('corrupt'),
      };
      this.logger.info(summary, 'recorded volumes resumed');
      return summary;
    })();
    return { done };
  }

  /** True while recorded volumes are still being resumed (Probe and /readyz say so). */
  get resuming(): boolean {
    return this.pendingResumes.size > 0;
  }

  private queueResume(record: VolumeRecord): PendingResume {
    const volumeId = record.spec.volumeId;
    let kick!: () => void;
    const kicked = new Promise<void>((resolve) => {
      kick = resolve;
    });
    // mutex.run claims the volume's lock now, synchronously: requests arriving later queue behind.
    const outcome = this.mutex
      .run(volumeId, async (): Promise<ResumeOutcome> => {
        await kicked;
        return this.resumeChecked(record);
      })
      .catch((err: unknown): ResumeOutcome => {
        this.events.emitError('resume-failed', volumeId);
        this.volumeLogger(record.spec).error({ reason: (err as Error).message }, 'resuming the volume failed');
        return 'failed';
      })
      .finally(() => this.pendingResumes.delete(volumeId));
    const item = { kick, outcome };
    this.pendingResumes.set(volumeId, item);
    return item;
  }

  /** A record that fails the publish checks is reported and left alone; nothing starts after shutdown. */
  private async resumeChecked(record: VolumeRecord): Promise<ResumeOutcome> {
    const check = this.opts.checkRecord;
    if (check !== undefined) {
      try {
        await check(record.spec);
      } catch (err) {
        // Only the volume id is named: the record's other fields are what is not trusted.
        this.logger.error({ volumeId: record.spec.volumeId, reason: (err as Error).message }, 'skipping a volume record that fails the publish checks');
        this.events.emitError('corrupt-record', record.spec.volumeId);
        return 'corrupt';
      }
    }
    if (this.stopped) return 'skipped';
    return this.resumeOne(record);
  }

  /** Stops every stream; mounts, files and records stay for the running pods and the next start. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    // Resumes not started yet finish at once (skipped); the ones under way end before sessions close.
    const resumes = [...this.pendingResumes.values()];
    for (const item of resumes) item.kick();
    await Promise.all(resumes.map((item) => item.outcome));
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map((session) => session.close()));
  }

  private async resumeOne(record: VolumeRecord): Promise<'resumed' | 'removed'> {
    const spec = record.spec;
    if (this.sessions.has(spec.volumeId)) return 'resumed';
    const log = this.volumeLogger(spec);
    const podDir = podDirOf(spec.targetPath) ?? dirname(spec.targetPath);
    if (!(await exists(podDir))) {
      log.info({ podDir }, 'pod is gone; dropping its volume');
      await this.teardown(spec.volumeId, [spec.targetPath]);
      return 'removed';
    }
    let tmpfs: MountedTmpfs | undefined;
    if (!(await this.opts.mounter.isMountPoint(spec.targetPath))) {
      log.info({}, 'tmpfs missing after restart; mounting it again');
      tmpfs = await this.mountTmpfs(spec);
    } else {
      tmpfs = await this.adoptTmpfs(spec.targetPath);
    }
    if (this.stopped) return 'resumed';
    this.startSession(spec, log, tmpfs);
    return 'resumed';
  }

  private async freshPublish(spec: VolumeSpec, mounted: boolean, log: DriverLogger, signal?: AbortSignal): Promise<void> {
    try {
      // The record is in place before any side effect (a restarted driver finds it); making it
      // durable against a power loss overlaps with the mount and the first SVID, and is awaited
      // before the publish answers.
      const staged = await this.opts.store.stage(spec, this.clock.now());
      const committed = staged.commit();
      const served = (async (): Promise<void> => {
        const tmpfs = mounted ? await this.adoptTmpfs(spec.targetPath) : await this.mountTmpfs(spec);
        const session = this.startSession(spec, log, tmpfs);
        const outcome = await session.waitReady(this.timeoutMs, signal);
        if (outcome !== 'ready') throw this.notReady(spec, session, outcome);
      })();
      // allSettled first: both must be over before cleanup runs, whichever failed.
      const [commit, serve] = await Promise.allSettled([committed, served]);
      if (serve.status === 'rejected') throw serve.reason;
      if (commit.status === 'rejected') throw commit.reason;
    } catch (err) {
      this.events.emitError('publish-failed', spec.volumeId);
      log.warn({ reason: (err as Error).message }, 'publish failed; removing everything it created');
      const cleaned = await this.teardown(spec.volumeId, [spec.targetPath]).then(
        () => true,
        (cleanupErr: unknown) => {
          log.error({ reason: (cleanupErr as Error).message }, 'cleanup after a failed publish failed');
          return false;
        },
      );
      if (!cleaned) {
        // Kubelet forgets a volume after a final error, so leftovers would never be unpublished:
        // answer with a status kubelet treats as uncertain, and it calls again (or unpublishes).
        throw new ManagerError(
          'cleanup-incomplete',
          `publishing volume ${spec.volumeId} failed (${(err as Error).message}) and its cleanup did not finish; retry`,
          { cause: err },
        );
      }
      if (this.stopped && !(err instanceof ManagerError)) {
        throw new ManagerError('shutting-down', SHUTTING_DOWN_MESSAGE, { cause: err });
      }
      throw asManagerError(err, `publishing volume ${spec.volumeId}`);
    }
  }

  /** Stream first, then mount, then directory; the record goes last so a crash midway is retried. */
  private async teardown(volumeId: string, targets: readonly string[]): Promise<void> {
    const session = this.sessions.get(volumeId);
    this.sessions.delete(volumeId);
    await session?.close();
    for (const target of targets) {
      await this.internal(`unmounting ${target}`, () => this.opts.mounter.unmount(target));
      await this.internal(`removing ${target}`, () => removeMountDir(target));
    }
    await this.internal('removing the volume record', () => this.opts.store.remove(volumeId));
  }

  /**
   * Mounts a fresh tmpfs at the target and records which one it is. Nothing may hide under it: a
   * directory holding the writer's layout is emptied first, one holding anything else is refused.
   */
  private async mountTmpfs(spec: VolumeSpec): Promise<MountedTmpfs | undefined> {
    await makeMountDir(spec.targetPath);
    if (!this.onTmpfs) {
      await this.opts.mounter.mountTmpfs(spec.targetPath, this.tmpfsOptions(spec));
      return undefined;
    }
    await emptyMountDir(spec.targetPath);
    await this.opts.mounter.mountTmpfs(spec.targetPath, this.tmpfsOptions(spec));
    return checkTmpfsRoot(spec.targetPath);
  }

  /** Records the tmpfs already mounted at the target (a restart, a re-publish), after checking it is one. */
  private async adoptTmpfs(targetPath: string): Promise<MountedTmpfs | undefined> {
    return this.onTmpfs ? checkTmpfsRoot(targetPath) : undefined;
  }

  /** The mounter puts a real tmpfs at each target, which can then be checked before every write. */
  private get onTmpfs(): boolean {
    return this.opts.targetsOnTmpfs !== false;
  }

  private startSession(spec: VolumeSpec, log: DriverLogger, tmpfs: MountedTmpfs | undefined): VolumeSession {
    const verifyTarget = tmpfs === undefined ? undefined : () => checkTmpfsRoot(spec.targetPath, tmpfs);
    const session = new VolumeSession(spec, {
      identity: this.opts.identity,
      files: new VolumeFiles(spec, { writerFactory: this.writerFactory, pem: this.pem, verifyTarget }),
      logger: log,
      clock: this.clock,
      events: this.events,
      retryDelayMs: this.opts.retryDelayMs,
      random: this.opts.random,
      jwtRetry: this.opts.jwtRetry,
      svidCache: this.svidCache,
      writeSlots: this.writeSlots,
    });
    this.sessions.set(spec.volumeId, session);
    session.start();
    return session;
  }

  private notReady(spec: VolumeSpec, session: VolumeSession, outcome: Exclude<WaitOutcome, 'ready'>): ManagerError {
    const diagnosis = session.diagnosis();
    const { identity } = this.opts;
    if (outcome === 'refused' && diagnosis.refusal !== undefined) return refusedError(spec, diagnosis.refusal);
    return notReadyError({
      spec,
      asked: identity.describe(spec.pod),
      waitingFor: diagnosis.waitingFor,
      reason: identity.unreadyReason(diagnosis.agentError) ?? diagnosis.problem,
      outcome: outcome === 'aborted' ? 'aborted' : 'timeout',
      timeoutMs: this.timeoutMs,
    });
  }

  private tmpfsOptions(spec: VolumeSpec): TmpfsOptions {
    const sizeBytes = this.opts.tmpfsSizeBytes ?? DEFAULT_TMPFS_SIZE_BYTES;
    // With an fsGroup only that group may enter; without one, the files' own modes decide.
    const base: TmpfsOptions = spec.fsGroup === null ? { sizeBytes, mode: 0o755 } : { sizeBytes, mode: 0o750, gid: spec.fsGroup };
    // kubelet's SELinux label (seLinuxMount); without one the mounter applies the driver's default.
    return spec.mountContext === null ? base : { ...base, context: spec.mountContext };
  }

  private get timeoutMs(): number {
    return this.opts.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  }

  private volumeLogger(spec: VolumeSpec): DriverLogger {
    return childLogger(this.logger, { volumeId: spec.volumeId, pod: spec.pod.name, namespace: spec.pod.namespace });
  }

  /** The id of another live volume published at `targetPath`, if any. */
  private ownerOfTarget(targetPath: string, volumeId: string): string | undefined {
    for (const [id, session] of this.sessions) {
      if (id !== volumeId && session.spec.targetPath === targetPath) return id;
    }
    return undefined;
  }

  /** A corrupt record is treated as absent (and overwritten by a publish); it holds no secrets. */
  private async readRecord(volumeId: string, log: DriverLogger): Promise<VolumeRecord | undefined> {
    try {
      return await this.opts.store.get(volumeId);
    } catch (err) {
      if (err instanceof VolumeStoreError && err.kind === 'corrupt') {
        log.warn({ reason: err.message }, 'ignoring a corrupt volume record');
        return undefined;
      }
      throw asManagerError(err, 'reading the volume record');
    }
  }

  private async internal<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw asManagerError(err, what);
    }
  }
}
