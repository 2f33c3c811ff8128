import type { Clock, ClockTimer } from '../clock/clock.js';

/** setTimeout's limit: a longer deadline is capped (at ~24.8 days) instead of firing at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Waiter<T, E> {
  resolve(value: T): void;
  reject(error: E): void;
  timer: ClockTimer;
}

/**
 * The pending ready() calls of a source: each with its deadline on the injected Clock, all settled
 * at once when the first material arrives or the source gives up. Every Clock timer is unref'd, yet
 * a pending ready() must keep the process alive until it settles (a script that only awaits ready()
 * would otherwise exit silently): one ref'd handle, held exactly while waiters exist, does that
 * whatever the clock; it never fires anything.
 */
export class ReadyWaiters<T, E> {
  private readonly clock: Clock;
  private readonly waiters = new Set<Waiter<T, E>>();
  private keepAliveHandle: ReturnType<typeof setInterval> | undefined;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /** Settles with the next resolveAll/rejectAll, or with `onTimeout()` after `timeoutMs`. */
  wait(timeoutMs: number, onTimeout: () => E): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T, E> = {
        resolve,
        reject,
        timer: this.clock.setTimeout(() => {
          this.waiters.delete(waiter);
          this.keepAlive();
          reject(onTimeout());
        }, Math.min(timeoutMs, MAX_TIMER_MS)),
      };
      this.waiters.add(waiter);
      this.keepAlive();
    });
  }

  resolveAll(value: T): void {
    this.settle((waiter) => waiter.resolve(value));
  }

  rejectAll(error: E): void {
    this.settle((waiter) => waiter.reject(error));
  }

  private settle(each: (waiter: Waiter<T, E>) => void): void {
    for (const waiter of this.waiters) {
      this.clock.clearTimeout(waiter.timer);
      each(waiter);
    }
    this.waiters.clear();
    this.keepAlive();
  }

  private keepAlive(): void {
    if (this.waiters.size > 0) {
      this.keepAliveHandle ??= setInterval(() => {}, MAX_TIMER_MS);
    } else if (this.keepAliveHandle !== undefined) {
      clearInterval(this.keepAliveHandle);
      this.keepAliveHandle = undefined;
    }
  }
}
