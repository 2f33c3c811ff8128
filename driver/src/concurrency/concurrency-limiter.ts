import { systemClock, type Clock, type ClockTimer } from '@spire-csi/sdk/clock';

export const DEFAULT_WRITE_CONCURRENCY = 32;

export interface BackgroundOptions {
  /**
   * Background tasks start only once no regular task has started for this long, so a burst of
   * writes arriving over a while (a rotation's thousand messages) is not interleaved with
   * housekeeping. 0 (default): they only queue behind regular tasks.
   */
  readonly quietMs?: number;
  /** ...but wait no longer than this after being queued, so steady traffic cannot starve them. */
  readonly maxDelayMs?: number;
  readonly clock?: Clock;
}

interface Deferred {
  readonly task: () => Promise<void>;
  readonly queuedAt: number;
  readonly done: () => void;
}

/**
 * At most `limit` tasks run at once; the rest wait in arrival order. Shared by every volume's
 * writes so a rotation or restart that touches a thousand folders at once keeps a bounded amount
 * of work (and memory) in flight, and the first folders finish first instead of all at the end.
 * Background tasks (housekeeping such as removing replaced payload directories) get a slot only
 * when no regular task is waiting, so a burst delivers every new credential before tidying up.
 */
export class ConcurrencyLimiter {
  readonly limit: number;
  private active = 0;
  private readonly queue: (() => void)[] = [];
  private readonly backgroundQueue: (() => void)[] = [];
  private readonly deferred: Deferred[] = [];
  private readonly quietMs: number;
  private readonly maxDelayMs: number;
  private readonly clock: Clock;
  private lastRegularStart = Number.NEGATIVE_INFINITY;
  private timer: ClockTimer | undefined;

  constructor(limit: number = DEFAULT_WRITE_CONCURRENCY, background: BackgroundOptions = {}) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency-limiter: limit must be a positive integer, got ${String(limit)}`);
    this.limit = limit;
    this.quietMs = Math.max(0, background.quietMs ?? 0);
    this.maxDelayMs = Math.max(this.quietMs, background.maxDelayMs ?? 5000);
    this.clock = background.clock ?? systemClock;
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  /** Tasks waiting, regular and background (including those waiting for quiet). */
  get waiting(): number {
    return this.queue.length + this.backgroundQueue.length + this.deferred.length;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    return this.runIn(this.queue, task);
  }

  /**
   * Queues `task` behind every regular task; its failure is dropped (housekeeping that the next
   * regular task redoes anyway). Resolves when it has run.
   */
  background(task: () => Promise<void>): Promise<void> {
    if (this.quietMs === 0) return this.runIn(this.backgroundQueue, task).catch(() => undefined);
    return new Promise<void>((done) => {
      this.deferred.push({ task, queuedAt: this.clock.now().getTime(), done });
      this.arm(this.quietMs);
    });
  }

  private arm(ms: number): void {
    if (this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.release();
    }, ms);
  }

  /** Moves the deferred tasks to the slot queue once it has been quiet (or they waited long enough). */
  private release(): void {
    const first = this.deferred[0];
    if (first === undefined) return;
    const now = this.clock.now().getTime();
    const quietFor = now - this.lastRegularStart;
    const waited = now - first.queuedAt;
    if (quietFor < this.quietMs && waited < this.maxDelayMs) {
      this.arm(Math.max(1, Math.min(this.quietMs - quietFor, this.maxDelayMs - waited)));
      return;
    }
    for (const item of this.deferred.splice(0)) {
      void this.runIn(this.backgroundQueue, item.task).catch(() => undefined).then(item.done);
    }
  }

  private async runIn<T>(queue: (() => void)[], task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit || this.queue.length > 0 || (queue === this.backgroundQueue && this.backgroundQueue.length > 0)) {
      await new Promise<void>((resolve) => queue.push(resolve));
    } else {
      this.active++;
    }
    if (queue === this.queue) this.lastRegularStart = this.clock.now().getTime();
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter, so `active` never dips and a newcomer cannot jump the queue.
      const next = this.queue.shift() ?? this.backgroundQueue.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}
