/**
 * Bounded polling for tests: wait for a condition instead of sleeping a guessed amount, and fail
 * with a message that says what never happened.
 */

export interface WaitForOptions {
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
  /** Delay between checks. Default 20 ms. */
  intervalMs?: number;
  /** What was being waited for; shown in the timeout error. */
  message?: string;
}

export class WaitForTimeoutError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'WaitForTimeoutError';
  }
}

/**
 * Resolves with the first value `predicate` returns that is not false/null/undefined. A predicate
 * that throws counts as "not yet"; the last error is attached as the cause if the wait times out.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value !== undefined && value !== null && value !== false) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const what = options.message ?? 'condition';
      throw new WaitForTimeoutError(`waitFor: timed out after ${timeoutMs} ms waiting for ${what}`, lastError);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
