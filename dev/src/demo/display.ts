/** Where the demo writes for people: the terminal, or a pipe. */
export interface Output {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** How the running demo is shown: a live redrawn view, or one plain line per event. */
export interface Display {
  start(): void;
  /** A line that stays (headers, notes, the summary), printed above any live view. */
  line(text: string): void;
  /** Final state on screen; later output goes below it. Idempotent. */
  stop(): void;
}

export interface DisplayContext {
  /** E.g. `rotation every 2s (SVID TTL 4s)`. */
  readonly rotation: string;
  /** How the run ends, e.g. `Ctrl-C to stop` or `stops after 3 rotations`. */
  readonly ending: string;
  readonly requestIntervalMs: number;
}
