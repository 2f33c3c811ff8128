/** Seconds since the demo started, fixed width so plain log lines align: `[   4.1s]`. */
export function stamp(elapsedMs: number): string {
  return `[${(elapsedMs / 1000).toFixed(1).padStart(6)}s]`;
}

/** Time left until `at`, e.g. `3.2s`, `4m10s`, or `expired`. */
export function timeLeft(at: Date, nowMs: number): string {
  const ms = at.getTime() - nowMs;
  if (ms <= 0) return 'expired';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.floor((ms % 60_000) / 1000);
  return minutes < 60 ? `${minutes}m${seconds}s` : `${Math.floor(minutes / 60)}h${minutes % 60}m`;
}

/** Long enough to tell serials apart at a glance in the live view. */
export function shortSerial(serial: string, length = 12): string {
  return serial.length <= length ? serial : `${serial.slice(0, length)}…`;
}
