/**
 * The one source of time for the SDK and the driver: wall-clock reads and timers. Everything that
 * reads the time or waits takes a Clock, so tests advance a fake one instead of sleeping.
 */
export interface Clock {
  /** Wall-clock time. */
  now(): Date;
  /**
   * Runs `callback` once after `ms` (clamped to setTimeout's 24.8-day limit by the caller). A
   * pending timer never keeps the process alive on its own.
   */
  setTimeout(callback: () => void, ms: number): ClockTimer;
  /** Cancels a pending timer; a fired, cancelled or undefined one is ignored. */
  clearTimeout(timer: ClockTimer | undefined): void;
}

/** An opaque handle for a pending timer. */
export interface ClockTimer {
  readonly [clockTimerBrand]: true;
}
declare const clockTimerBrand: unique symbol;

/** Node's clock: `Date`, and unref'd `setTimeout`s. */
export const systemClock: Clock = {
  now: () => new Date(),
  setTimeout(callback, ms) {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return handle as unknown as ClockTimer;
  },
  clearTimeout(timer) {
    if (timer !== undefined) clearTimeout(timer as unknown as ReturnType<typeof setTimeout>);
  },
};

/** Resolves after `ms` on `clock`. */
export function delay(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}
