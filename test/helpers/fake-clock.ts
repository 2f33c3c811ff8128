import type { Clock, ClockTimer } from '@spire-csi/sdk/clock';

interface PendingTimer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A Clock that moves only when a test says so. `advance` fires due timers in time order and lets
 * the promise work each one starts settle before the next, so a test reads like a timeline.
 */
export class FakeClock implements Clock {
  #nowMs: number;
  #nextId = 1;
  readonly #timers = new Map<number, PendingTimer>();

  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.#nowMs = typeof start === 'number' ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.#nowMs);
  }

  get nowMs(): number {
    return this.#nowMs;
  }

  setTimeout(callback: () => void, ms: number): ClockTimer {
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#nowMs + Math.max(0, ms), callback });
    return { id } as unknown as ClockTimer;
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer !== undefined) this.#timers.delete((timer as unknown as { id: number }).id);
  }

  /** Timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Delays of the pending timers from now, soonest first. */
  pendingDelays(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#nowMs).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.#nowMs + ms;
    await settle();
    for (;;) {
      const due = this.#next(end);
      if (due === undefined) break;
      this.#timers.delete(due.id);
      this.#nowMs = Math.max(this.#nowMs, due.at);
      due.callback();
      await settle();
    }
    this.#nowMs = end;
    await settle();
  }

  /** Fires the next pending timer (moving time to it); false when none is pending. */
  async runNext(): Promise<boolean> {
    const due = this.#next(Number.POSITIVE_INFINITY);
    if (due === undefined) return false;
    await this.advance(due.at - this.#nowMs);
    return true;
  }

  /** Jumps to the soonest pending timer, fires it and returns its delay; throws when none is pending. */
  async fireNext(): Promise<number> {
    const delay = this.pendingDelays()[0];
    if (delay === undefined) throw new Error('FakeClock: no timer pending');
    await this.advance(delay);
    return delay;
  }

  /**
   * Settles `promise`, letting fake time pass from timer to timer while it is pending: for code
   * that waits on this clock along the way (retry pauses, backoff) when the test cares about the
   * outcome, not the schedule. While no timer is pending, real I/O the promise may also wait on
   * (a filesystem watch getting ready) gets a chance to finish. Throws if it is still pending
   * after `maxTimers` timers, or after `idleLimit` turns with nothing pending at all.
   */
  async runUntilSettled<T>(promise: Promise<T>, maxTimers = 1_000, idleLimit = 10_000): Promise<T> {
    let settled = false;
    const done = promise.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    let fired = 0;
    let idle = 0;
    await settle();
    while (!settled) {
      if (this.#timers.size > 0) {
        if (++fired > maxTimers) throw new Error(`FakeClock.runUntilSettled: still pending after ${maxTimers} timers`);
        await this.runNext();
      } else {
        if (++idle > idleLimit) throw new Error('FakeClock.runUntilSettled: still pending with no timer to fire');
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    await done;
    return promise;
  }

  /** Sets the wall clock without firing timers (a clock jump). */
  set(date: Date): void {
    this.#nowMs = date.getTime();
  }

  #next(limit: number): PendingTimer | undefined {
    let soonest: PendingTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (timer.at <= limit && (soonest === undefined || timer.at < soonest.at || (timer.at === soonest.at && timer.id < soonest.id))) {
        soonest = timer;
      }
    }
    return soonest;
  }
}

/** Lets pending promise callbacks and I/O completions that are already done run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
