/**
 * How long a source waits before its next expiry check.
 *
 * Node keeps an internal list per distinct duration of an unref'd timer until that duration has
 * elapsed, even after clearTimeout (it expects unref'd durations to recur, as in http). A source
 * re-arms its expiry timer on every rotation, each time with a new hours-long duration, so exact
 * waits would leave one list behind per rotation (measured: ~1.3 MiB per 1,000 rotations). Long
 * waits are therefore taken in fixed steps, which all share one list; only the last step before a
 * warning is exact, and it fires within a step.
 */
export const EXPIRY_CHECK_STEP_MS = 60_000;

export function expiryCheckDelay(untilMs: number): number {
  return Math.min(Math.max(untilMs, 0), EXPIRY_CHECK_STEP_MS);
}
