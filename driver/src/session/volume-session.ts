import { createHash } from 'node:crypto';
import type { Logger } from '@spire-csi/sdk';
import type { Clock, ClockTimer } from '@spire-csi/sdk/clock';
import { Backoff, type BackoffOptions } from '../retry/backoff.js';
import type { AgentError, AgentX509Svid, BundleUpdate, IdentityBackend, Subscription, X509SvidUpdate } from '../identity/identity-backend.js';
import { AgentSvidError, chooseSvid, describeChoice, describeSvid } from './agent-svid.js';
import type { ConcurrencyLimiter } from '../concurrency/concurrency-limiter.js';
import type { JwtFailure } from './jwt-refresher.js';
import { jwtFingerprintOf, VolumeJwt } from './volume-jwt.js';
import { earliestJwtExpiry, type VolumeJwtState, type VolumeState } from '../volume/volume-state.js';
import { TargetUnsafeError } from '../storage/volume-files.js';
import { SvidValidationCache, type ValidatedSvid } from './svid-validation-cache.js';
import type { VolumeEvents } from '../volume/volume-events.js';
import type { VolumeSpec } from '../volume/volume-spec.js';

/** Where a session's states go: the volume's files (storage/VolumeFiles). */
export interface StateWriter {
  /** Resolves true when what is served changed. Throws when the state could not be written. */
  write(state: VolumeState): Promise<boolean>;
}

export interface SessionDeps {
  readonly identity: IdentityBackend;
  readonly files: StateWriter;
  readonly logger: Logger;
  /** Validity checks, the publish wait, write retries and JWT refreshes all run on it. */
  readonly clock: Clock;
  readonly events: VolumeEvents;
  /** First retry delay after a write failed; doubles up to 30 s. */
  readonly retryDelayMs?: number;
  /** Uniform [0, 1) for refresh jitter and retry backoff. */
  readonly random?: () => number;
  /** Retry schedule after a failed JWT-SVID fetch. */
  readonly jwtRetry?: BackoffOptions;
  /** Shared by the manager's sessions: the same SVID is parsed and verified once, not per volume. */
  readonly svidCache?: SvidValidationCache;
  /** Shared cap on concurrent sink deliveries across sessions. */
  readonly writeSlots?: ConcurrencyLimiter;
}

/** Why a session has nothing (new) to deliver; used to explain a publish timeout. */
export interface SessionDiagnosis {
  readonly problem: string;
  readonly agentError: AgentError | undefined;
  /** The agent answered that the request cannot succeed as sent (AgentError kind `refused`); set when waitReady says 'refused'. */
  readonly refusal: AgentError | undefined;
  /** What is still missing before the first delivery. */
  readonly waitingFor: 'X.509-SVID' | 'JWT-SVID';
}

interface Delivered {
  /** Everything the sinks publish. */
  readonly fingerprint: string;
  /** The X.509 part alone: a change there is a rotation, a JWT refresh is not. */
  readonly x509Fingerprint: string;
  readonly notAfter: Date;
}

/** How a wait for the first delivery ended; `refused`: the agent refused the request for good (see diagnosis()). */
export type WaitOutcome = 'ready' | 'timeout' | 'aborted' | 'refused';

export class SessionClosedError extends Error {
  constructor(volumeId: string) {
    super(`volume-session: volume ${volumeId} was closed`);
    this.name = 'SessionClosedError';
  }
}

/**
 * The live identity of one volume: its SVID stream and its bundles in (the pod's own, sent with
 * each SVID update, or else the backend's bundle stream; plus, when JWT audiences are asked for,
 * one refreshed JWT-SVID per audience and the JWT bundle stream), validated consistent states out
 * to the sinks. Updates are coalesced and delivered one at a time; anything unusable keeps the
 * last good state in place. Every state carries a token for every audience, so a refresh of any one
 * writes a generation holding all of them.
 */
export class VolumeSession {
  readonly spec: VolumeSpec;
  private readonly deps: SessionDeps;
  private update: X509SvidUpdate | undefined;
  private bundles: BundleUpdate | undefined;
  private agentError: AgentError | undefined;
  /** The last answer that can never succeed as sent, until the same source answers again. */
  private refusal: { readonly error: AgentError; readonly source: 'x509' | 'jwt' } | undefined;
  private problem = 'waiting for the first X.509-SVID response from the SPIRE agent';
  private x509Ready = false;
  private delivered: Delivered | undefined;
  private subscription: Subscription | undefined;
  private unwatchBundles: (() => void) | undefined;
  /** The JWT side, when the volume asks for JWT audiences. */
  private readonly jwt: VolumeJwt | undefined;
  private dirty = false;
  private flushing: Promise<void> = Promise.resolve();
  private running = false;
  private retryTimer: ClockTimer | undefined;
  private readonly retry: Backoff;
  private closed = false;
  private readonly waiters = new Set<{ resolve: (outcome: 'ready' | 'refused') => void; reject: (err: Error) => void }>();
  private readonly svidCache: SvidValidationCache;
  /** Problems of extra SVIDs already reported, so one that stays invalid is warned about once. */
  private reportedExtraProblems = new Set<string>();

  constructor(spec: VolumeSpec, deps: SessionDeps) {
    this.spec = spec;
    this.deps = deps;
    this.svidCache = deps.svidCache ?? new SvidValidationCache({ maxEntries: 2 });
    // Deterministic doubling: one volume's write retries need no jitter against other volumes'.
    this.retry = new Backoff({ initialMs: deps.retryDelayMs ?? 1000, maxMs: 30_000, multiplier: 2, jitter: 'none' });
    this.jwt =
      spec.jwtAudiences.length === 0
        ? undefined
        : new VolumeJwt(spec, { identity: deps.identity, clock: deps.clock, random: deps.random ?? Math.random, retry: deps.jwtRetry });
  }

  get ready(): boolean {
    return this.delivered !== undefined;
  }

  /** Expiry of the SVID currently delivered. */
  get notAfter(): Date | undefined {
    return this.delivered?.notAfter;
  }

  diagnosis(): SessionDiagnosis {
    if (this.x509Ready && this.jwt !== undefined && this.delivered === undefined) {
      const missing = this.jwt.firstAudienceWithoutToken();
      const agentError = missing === undefined ? undefined : this.jwt.failureOf(missing)?.agentError;
      return { problem: this.problem, agentError, refusal: this.refusal?.error, waitingFor: 'JWT-SVID' };
    }
    return { problem: this.problem, agentError: this.agentError, refusal: this.refusal?.error, waitingFor: 'X.509-SVID' };
  }

  start(): void {
    const { identity, logger } = this.deps;
    this.unwatchBundles = identity.watchBundles(this.spec.pod, (bundles) => {
      this.bundles = bundles;
      this.schedule();
    });
    this.subscription = identity.subscribeX509Svids(this.spec.pod, {
      onUpdate: (update) => {
        this.update = update;
        this.agentError = undefined;
        if (this.refusal?.source === 'x509') this.refusal = undefined;
        this.schedule();
      },
      onError: (error) => {
        this.agentError = error;
        this.deps.events.emitError('agent-error', this.spec.volumeId);
        const fields = { err: error.message, kind: error.kind };
        if (this.delivered !== undefined) logger.warn(fields, 'SVID stream error; keeping the current files');
        else logger.info(fields, 'SVID stream error; retrying');
        if (error.kind === 'refused') this.refuse(error, 'x509');
      },
    });
    this.jwt?.start({
      onToken: () => {
        if (this.refusal?.source === 'jwt') this.refusal = undefined;
        this.schedule();
      },
      onBundles: () => this.schedule(),
      onFailure: (failure) => this.onJwtFailure(failure),
    });
  }

  private onJwtFailure(failure: JwtFailure): void {
    const { logger, events } = this.deps;
    const jwt = this.jwt!;
    // A publish timeout reports the first audience still without a token, as diagnosis() does.
    if (!this.ready && this.x509Ready) this.problem = jwt.problemOf(jwt.firstAudienceWithoutToken() ?? failure.audience);
    if (failure.invalid) events.emitError('invalid-svid', this.spec.volumeId);
    else if (failure.agentError !== undefined) events.emitError('agent-error', this.spec.volumeId);
    const current = jwt.tokenOf(failure.audience);
    const fields = {
      audience: failure.audience,
      reason: failure.problem,
      retryInMs: failure.retryInMs,
      jwtExpiresAt: current?.expiresAt.toISOString(),
    };
    if (current !== undefined) logger.warn(fields, 'JWT-SVID refresh failed; keeping the current token');
    else logger.info(fields, 'no usable JWT-SVID yet; retrying');
    if (failure.agentError?.kind === 'refused') this.refuse(failure.agentError, 'jwt');
  }

  /**
   * The agent answered that the request can never succeed as sent: a publish still waiting fails
   * now instead of at its timeout. A volume already published keeps its files and its retries.
   */
  private refuse(error: AgentError, source: 'x509' | 'jwt'): void {
    this.refusal = { error, source };
    if (this.delivered !== undefined) return;
    for (const waiter of [...this.waiters]) waiter.resolve('refused');
  }

  /**
   * Resolves 'ready' after the first successful delivery, or how the wait ended otherwise
   * (timeout, abort, or the agent refusing the request for good); rejects when the session closes.
   */
  waitReady(timeoutMs: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.delivered !== undefined) return Promise.resolve('ready');
    if (this.closed) return Promise.reject(new SessionClosedError(this.spec.volumeId));
    if (signal?.aborted) return Promise.resolve('aborted');
    if (this.refusal !== undefined) return Promise.resolve('refused');
    return new Promise((resolve, reject) => {
      const { clock } = this.deps;
      const finish = (outcome: WaitOutcome): void => {
        clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        resolve(outcome);
      };
      const onAbort = (): void => finish('aborted');
      const timer = clock.setTimeout(() => finish('timeout'), timeoutMs);
      const waiter = {
        resolve: (outcome: 'ready' | 'refused') => finish(outcome),
        reject: (err: Error) => {
          clock.clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.waiters.delete(waiter);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.deps.clock.clearTimeout(this.retryTimer);
    this.subscription?.close();
    this.unwatchBundles?.();
    this.jwt?.close();
    for (const waiter of [...this.waiters]) waiter.reject(new SessionClosedError(this.spec.volumeId));
    // The files stay for the running pod; unpublish removes the mount.
    await this.flushing;
  }

  private schedule(): void {
    this.dirty = true;
    if (this.running || this.closed) return;
    this.running = true;
    this.flushing = (async () => {
      // `running` is cleared in the same synchronous step that sees `dirty` false, so an update
      // arriving at any point is either picked up by this loop or starts a new one.
      while (this.dirty && !this.closed) {
        this.dirty = false;
        try {
          await this.evaluate();
        } catch (err) {
          // A bug here must not become an unhandled rejection that kills the driver and every volume.
          this.deps.logger.error({ reason: (err as Error).message }, 'unexpected failure while handling an update');
        }
      }
      this.running = false;
    })();
  }

  private async evaluate(): Promise<void> {
    const { logger, clock } = this.deps;
    const update = this.update;
    if (update === undefined) return;
    // The pod's own bundles when its backend sends them (Broker API): never another pod's.
    const bundles = update.bundles ?? this.bundles;
    this.x509Ready = false;
    if (bundles === undefined) {
      this.problem = 'waiting for the trust bundles from the SPIRE agent';
      return;
    }
    const chosen = chooseSvid(update, this.spec.spiffeId, this.spec.hint);
    if (chosen === undefined) {
      this.problem =
        update.svids.length === 0
          ? 'the SPIRE agent returned no X.509-SVID (no registration entry matches this pod yet)'
          : `none of the SVIDs the agent returned is ${describeChoice(this.spec.spiffeId, this.spec.hint)} ` +
            `(got ${update.svids.map(describeSvid).join(', ')})`;
      if (this.delivered !== undefined) logger.warn({ reason: this.problem }, 'no usable SVID in the update; keeping the last good files');
      else logger.debug({ reason: this.problem }, 'no usable SVID in the update yet');
      return;
    }
    const federatesWith = update.federatesWith;
    const now = clock.now();
    let validated: ValidatedSvid;
    try {
      validated = this.svidCache.validate(chosen, bundles, { now, federatesWith });
    } catch (err) {
      if (!(err instanceof AgentSvidError)) throw err;
      this.problem = err.message;
      if (err.problem === 'invalid') {
        this.deps.events.emitError('invalid-svid', this.spec.volumeId);
        logger.warn({ reason: err.message }, 'rejected the SVID update from the agent; keeping the last good files');
      } else {
        logger.debug({ reason: err.message }, 'SVID not publishable yet');
      }
      return;
    }
    const parsed = validated.svid;
    this.x509Ready = true;
    let jwt: VolumeJwtState | undefined;
    if (this.jwt !== undefined) {
      const result = this.jwt.state(federatesWith);
      if ('problem' in result) {
        this.problem = result.problem;
        if (result.disagree === true && this.delivered !== undefined) logger.warn({ reason: result.problem }, 'JWT-SVIDs disagree; keeping the current files');
        return;
      }
      jwt = result.state;
    }
    const extras = this.spec.allSvids ? this.validateExtras(update.svids, chosen, bundles, now, federatesWith) : undefined;
    const x509Fingerprint = publishedFingerprint(validated.fingerprint, chosen.hint, extras);
    const fingerprint = jwt === undefined ? x509Fingerprint : `${x509Fingerprint}:${jwtFingerprintOf(jwt)}`;
    if (fingerprint === this.delivered?.fingerprint) return;
    const state: VolumeState = {
      spec: this.spec,
      svid: chosen,
      parsed,
      bundles,
      federatesWith,
      jwt,
      ...(extras === undefined ? {} : { extras: extras.map(({ svid, validated: v }) => ({ svid, parsed: v.svid })) }),
      updatedAt: now,
    };
    const deliver = async (): Promise<void> => {
      // Closed while waiting for a slot: the folder is being torn down, nothing may be written.
      if (this.closed) return;
      await this.deps.files.write(state);
    };
    try {
      await (this.deps.writeSlots === undefined ? deliver() : this.deps.writeSlots.run(deliver));
    } catch (err) {
      if (err instanceof TargetUnsafeError) {
        // No retry: writing again would hit the same plain directory. The next publish retry or
        // restart mounts a fresh tmpfs and starts a new session.
        this.problem = `the volume's tmpfs is gone: ${err.message}`;
        this.deps.events.emitError('target-not-mounted', this.spec.volumeId);
        logger.warn({ reason: err.message, targetPath: this.spec.targetPath }, 'the volume is no longer on its tmpfs; not writing until it is mounted again');
        return;
      }
      this.problem = `writing the volume's files failed: ${(err as Error).message}`;
      this.deps.events.emitError('write-failed', this.spec.volumeId);
      logger.error({ reason: (err as Error).message }, 'delivering the identity failed; will retry');
      this.scheduleRetry();
      return;
    }
    if (this.closed) return;
    const initial = this.delivered === undefined;
    const rotated = initial || this.delivered?.x509Fingerprint !== x509Fingerprint;
    this.delivered = { fingerprint, x509Fingerprint, notAfter: parsed.notAfter };
    this.retry.reset();
    const facts = {
      spiffeId: chosen.spiffeId,
      notAfter: parsed.notAfter.toISOString(),
      federatesWith,
      ...(jwt === undefined
        ? {}
        : { jwtAudiences: jwt.tokens.map((t) => t.audience), jwtExpiresAt: earliestJwtExpiry(jwt).toISOString() }),
    };
    // One line per volume at info when it is published; rotations of a thousand volumes at once
    // would otherwise write a thousand lines (and their CPU) every few minutes.
    if (initial) logger.info(facts, 'identity published');
    else logger.debug(facts, rotated ? 'identity updated' : 'JWT-SVID refreshed');
    if (rotated) this.deps.events.emit('rotated', { volumeId: this.spec.volumeId, spiffeId: chosen.spiffeId, notAfter: parsed.notAfter, initial });
    this.refusal = undefined;
    for (const waiter of [...this.waiters]) waiter.resolve('ready');
  }

  /**
   * With all-svids, the pod's other SVIDs, each checked exactly like the chosen one. An invalid or
   * not yet publishable one is left out of the generation (warned about once) rather than holding
   * back the chosen SVID, which the pod depends on; it is written as soon as it is usable.
   */
  private validateExtras(
    svids: readonly AgentX509Svid[],
    chosen: AgentX509Svid,
    bundles: BundleUpdate,
    now: Date,
    federatesWith: readonly string[],
  ): ExtraSvid[] {
    const extras: ExtraSvid[] = [];
    const problems = new Set<string>();
    for (const svid of svids) {
      if (svid === chosen) continue;
      try {
        extras.push({ svid, validated: this.svidCache.validate(svid, bundles, { now, federatesWith }) });
      } catch (err) {
        if (!(err instanceof AgentSvidError)) throw err;
        const key = `${svid.spiffeId}\n${svid.hint}\n${err.message}`;
        problems.add(key);
        if (this.reportedExtraProblems.has(key)) continue;
        const fields = { spiffeId: svid.spiffeId, hint: svid.hint, reason: err.message };
        if (err.problem === 'invalid') {
          this.deps.events.emitError('invalid-svid', this.spec.volumeId);
          this.deps.logger.warn(fields, 'left an invalid extra SVID out of the folder; the chosen SVID is published without it');
        } else {
          this.deps.logger.debug(fields, 'extra SVID not publishable yet; leaving it out for now');
        }
      }
    }
    this.reportedExtraProblems = problems;
    return extras;
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer !== undefined) return;
    this.retryTimer = this.deps.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, this.retry.next());
  }
}

interface ExtraSvid {
  readonly svid: AgentX509Svid;
  readonly validated: ValidatedSvid;
}

/**
 * The X.509 part of what is published: the chosen SVID's validation fingerprint, plus its hint and
 * the extra SVIDs (with theirs) when they are written, since identity.json and hints.json show them.
 */
function publishedFingerprint(chosen: string, hint: string, extras: readonly ExtraSvid[] | undefined): string {
  if (hint === '' && extras === undefined) return chosen;
  const hash = createHash('sha256').update(`${chosen}\n${hint.length}:${hint}`);
  for (const extra of extras ?? []) hash.update(`\n${extra.validated.fingerprint}\n${extra.svid.hint.length}:${extra.svid.hint}`);
  return hash.digest('hex');
}
