/**
 * Capped exponential backoff with jitter, so a fleet of drivers reconnecting to restarted agents
 * (or one driver's many streams) spread out instead of arriving in lockstep.
 *
 * - `full`: a uniform delay in [0, min(max, initial * multiplier^attempt)] (AWS "full jitter").
 * - `decorrelated`: uniform in [initial, min(max, previous * 3)]; never below `initial`, which
 *   keeps a misbehaving agent from being hammered when the random draw is small.
 * - `none`: the plain exponential schedule, for deterministic callers.
 */
export type JitterMode = 'full' | 'decorrelated' | 'none';

export interface BackoffOptions {
  /** First delay (and the floor for decorrelated jitter). Default 500 ms. */
  readonly initialMs?: number;
  /** Cap on any single delay. Default 30 s. */
  readonly maxMs?: number;
  /** Growth factor per attempt for `full`/`none`. Default 2. */
  readonly multiplier?: number;
  readonly jitter?: JitterMode;
  /** Uniform [0, 1); injectable so tests are deterministic. */
  readonly random?: () => number;
}

export class BackoffError extends Error {
  constructor(message: string) {
    super(`backoff: ${message}`);
    this.name = 'BackoffError';
  }
}

export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly multiplier: number;
  private readonly jitter: JitterMode;
  private readonly random: () => number;
  private attempt = 0;
  private previousMs: number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30_000;
    this.multiplier = options.multiplier ?? 2;
    this.jitter = options.jitter ?? 'decorrelated';
    this.random = options.random ?? Math.random;
    if (!(this.initialMs > 0)) throw new BackoffError(`initialMs must be > 0, got ${this.initialMs}`);
    if (!(this.maxMs >= this.initialMs)) throw new BackoffError(`maxMs (${this.maxMs}) must be >= initialMs (${this.initialMs})`);
    if (!(this.multiplier >= 1)) throw new BackoffError(`multiplier must be >= 1, got ${this.multiplier}`);
    this.previousMs = this.initialMs;
  }

  /** Failures since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next try; each call counts one more failure. */
  next(): number {
    const exponent = Math.min(this.attempt, 1000);
    this.attempt++;
    const ceiling = Math.min(this.maxMs, this.initialMs * this.multiplier ** exponent);
    let delay: number;
    switch (this.jitter) {
      case 'none':
        delay = ceiling;
        break;
      case 'full':
        delay = this.draw() * ceiling;
        break;
      case 'decorrelated': {
        const upper = Math.min(this.maxMs, this.previousMs * 3);
        delay = this.initialMs + this.draw() * (upper - this.initialMs);
        break;
      }
    }
    this.previousMs = Math.max(this.initialMs, delay);
    return Math.round(Math.min(this.maxMs, Math.max(0, delay)));
  }

  /** Call when the operation succeeded, so the next failure starts small again. */
  reset(): void {
    this.attempt = 0;
    this.previousMs = this.initialMs;
  }

  private draw(): number {
    const value = this.random();
    // A faulty injected source must not produce negative or unbounded delays.
    return Number.isFinite(value) ? Math.min(Math.max(value, 0), 1) : 0;
  }
}
