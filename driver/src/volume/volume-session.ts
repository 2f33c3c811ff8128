import { createHash } from 'node:crypto';
import type { Logger } from '@spire-csi/sdk';
import type {
  AgentError,
  BundleUpdate,
  IdentityProvider,
  Selector,
  Subscription,
  X509SvidUpdate,
} from '../spire/identity-provider.js';
import { AgentSvidError, chooseSvid, normalizeFederatesWith, validateAgentSvid } from './agent-svid.js';
import type { VolumeSink, VolumeState } from './sink.js';
import type { VolumeEvents } from './volume-events.js';
import type { VolumeSpec } from './volume-spec.js';

export interface SessionDeps {
  readonly identity: IdentityProvider;
  readonly selectors: readonly Selector[];
  readonly sinks: readonly VolumeSink[];
  readonly logger: Logger;
  readonly clock: () => Date;
  readonly events: VolumeEvents;
  /** First retry delay after a sink failed; doubles up to 30 s. */
  readonly retryDelayMs?: number;
}

/** Why a session has nothing (new) to deliver; used to explain a publish timeout. */
export interface SessionDiagnosis {
  readonly problem: string;
  readonly agentError: AgentError | undefined;
}

export class SessionClosedError extends Error {
  constructor(volumeId: string) {
    super(`volume-session: volume ${volumeId} was closed`);
    this.name = 'SessionClosedError';
  }
}

/**
 * The live identity of one volume: its SVID stream and the shared bundle stream in, validated
 * consistent states out to the sinks. Updates are coalesced and delivered one at a time; anything
 * unusable keeps the last good state in place.
 */
export class VolumeSession {
  readonly spec: VolumeSpec;
  private readonly deps: SessionDeps;
  private update: X509SvidUpdate | undefined;
  private bundles: BundleUpdate | undefined;
  private agentError: AgentError | undefined;
  private problem = 'waiting for the first X.509-SVID response from the SPIRE agent';
  private delivered: { fingerprint: string; notAfter: Date } | undefined;
  private subscription: Subscription | undefined;
  private unwatchBundles: (() => void) | undefined;
  private dirty = false;
  private flushing: Promise<void> = Promise.resolve();
  private running = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private closed = false;
  private readonly waiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>();

  constructor(spec: VolumeSpec, deps: SessionDeps) {
    this.spec = spec;
    this.deps = deps;
    this.retryDelay = deps.retryDelayMs ?? 1000;
  }

  get ready(): boolean {
    return this.delivered !== undefined;
  }

  /** Expiry of the SVID currently delivered. */
  get notAfter(): Date | undefined {
    return this.delivered?.notAfter;
  }

  diagnosis(): SessionDiagnosis {
    return { problem: this.problem, agentError: this.agentError };
  }

  start(): void {
    const { identity, selectors, logger } = this.deps;
    this.unwatchBundles = identity.watchBundles((bundles) => {
      this.bundles = bundles;
      this.schedule();
    });
    this.subscription = identity.watchX509Svids(selectors, {
      onUpdate: (update) => {
        this.update = update;
        this.agentError = undefined;
        this.schedule();
      },
      onError: (error) => {
        this.agentError = error;
        this.deps.events.emitError('agent-error', this.spec.volumeId);
        logger.warn({ err: error.message, kind: error.kind }, 'SVID stream error; keeping the current files');
      },
    });
  }

  /** Resolves after the first successful delivery; rejects on timeout, abort or close. */
  waitReady(timeoutMs: number, signal?: AbortSignal): Promise<'ready' | 'timeout' | 'aborted'> {
    if (this.delivered !== undefined) return Promise.resolve('ready');
    if (this.closed) return Promise.reject(new SessionClosedError(this.spec.volumeId));
    if (signal?.aborted) return Promise.resolve('aborted');
    return new Promise((resolve, reject) => {
      const finish = (outcome: 'ready' | 'timeout' | 'aborted'): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        resolve(outcome);
      };
      const onAbort = (): void => finish('aborted');
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      const waiter = {
        resolve: () => finish('ready'),
        reject: (err: Error) => {
          clearTimeout(timer);
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
    clearTimeout(this.retryTimer);
    this.subscription?.close();
    this.unwatchBundles?.();
    for (const waiter of [...this.waiters]) waiter.reject(new SessionClosedError(this.spec.volumeId));
    await this.flushing;
    await Promise.all(this.deps.sinks.map((sink) => sink.close()));
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
    const bundles = this.bundles;
    if (update === undefined) return;
    if (bundles === undefined) {
      this.problem = 'waiting for the trust bundles from the SPIRE agent';
      return;
    }
    const chosen = chooseSvid(update, this.spec.spiffeId);
    if (chosen === undefined) {
      this.problem =
        update.svids.length === 0
          ? 'the SPIRE agent returned no X.509-SVID for these selectors (no registration entry matches them yet)'
          : `none of the SVIDs the agent returned is ${this.spec.spiffeId} (got ${update.svids.map((s) => s.spiffeId).join(', ')})`;
      if (this.delivered !== undefined) logger.warn({ reason: this.problem }, 'no usable SVID in the update; keeping the last good files');
      return;
    }
    const federation = normalizeFederatesWith(update.federatesWith);
    if (federation.invalid.length > 0) logger.warn({ invalid: federation.invalid }, 'ignoring malformed federates_with entries');
    const now = clock();
    let parsed;
    try {
      parsed = validateAgentSvid(chosen, bundles, { now, federatesWith: federation.domains });
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
    const fingerprint = fingerprintOf(chosen.chainDer, chosen.keyDer, bundles, parsed.id.trustDomain.name, federation.domains);
    if (fingerprint === this.delivered?.fingerprint) return;
    const state: VolumeState = { spec: this.spec, svid: chosen, parsed, bundles, federatesWith: federation.domains, updatedAt: now };
    try {
      for (const sink of this.deps.sinks) await sink.update(state);
    } catch (err) {
      this.problem = `writing the volume's files failed: ${(err as Error).message}`;
      this.deps.events.emitError('write-failed', this.spec.volumeId);
      logger.error({ reason: (err as Error).message }, 'delivering the identity failed; will retry');
      this.scheduleRetry();
      return;
    }
    const initial = this.delivered === undefined;
    this.delivered = { fingerprint, notAfter: parsed.notAfter };
    this.retryDelay = this.deps.retryDelayMs ?? 1000;
    logger.info({ spiffeId: chosen.spiffeId, notAfter: parsed.notAfter.toISOString(), federatesWith: federation.domains }, initial ? 'identity published' : 'identity updated');
    this.deps.events.emit('rotated', { volumeId: this.spec.volumeId, spiffeId: chosen.spiffeId, notAfter: parsed.notAfter, initial });
    for (const waiter of [...this.waiters]) waiter.resolve();
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, this.retryDelay);
    this.retryTimer.unref();
    this.retryDelay = Math.min(this.retryDelay * 2, 30_000);
  }
}

/** Covers exactly what the sinks publish, so unrelated bundle changes do not rewrite files. */
function fingerprintOf(chain: readonly Buffer[], key: Buffer, bundles: BundleUpdate, own: string, federated: readonly string[]): string {
  const hash = createHash('sha256');
  const field = (data: Buffer | string): void => {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    hash.update(`${bytes.length}:`).update(bytes);
  };
  for (const der of chain) field(der);
  field(key);
  for (const td of [own, ...federated]) {
    field(td);
    field(bundles.get(td) ?? '');
  }
  return hash.digest('hex');
}
