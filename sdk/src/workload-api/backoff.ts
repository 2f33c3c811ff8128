/**
 * Reconnect delays: exponential up to a cap, each drawn from its upper half so a node's worth of
 * workloads restarting with their agent spread out, yet never retry sooner than half the step.
 */
import { WorkloadApiError } from './errors.js';

/** The `backoff` option of {@link WorkloadApiSource}. */
export interface BackoffOptions {
  /** The first delay's ceiling. Default 500 ms. */
  readonly initialMs?: number;
  /** No delay exceeds this. Default 30 s. */
  readonly maxMs?: number;
}

export const DEFAULT_BACKOFF_INITIAL_MS = 500;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;

export class ReconnectBackoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private attempt = 0;

  /** Throws a WorkloadApiError (`config`) for a non-positive or inverted range. */
  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = options.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
    this.maxMs = options.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
    if (!Number.isFinite(this.initialMs) || this.initialMs <= 0) {
      throw new WorkloadApiError('config', `backoff.initialMs must be a positive number of milliseconds, got ${String(options.initialMs)}`);
    }
    if (!Number.isFinite(this.maxMs) || this.maxMs < this.initialMs) {
      throw new WorkloadApiError('config', `backoff.maxMs must be a number of milliseconds >= backoff.initialMs (${this.initialMs}), got ${String(options.maxMs)}`);
    }
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** After a success: the next failure starts from the first step again. */
  reset(): void {
    this.attempt = 0;
  }
}
