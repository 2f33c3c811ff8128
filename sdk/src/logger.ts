/**
 * The logging surface the SDK needs. It is the subset of pino's API the SDK calls, so a pino
 * logger (or a child of one) can be passed as is; the default discards everything.
 */
export interface Logger {
  /** Routine detail (watch events, verification cache). */
  debug(obj: object, msg?: string): void;
  /** Loads and updates. */
  info(obj: object, msg?: string): void;
  /** Refused peers, rejected updates, SVIDs about to expire. */
  warn(obj: object, msg?: string): void;
  /** Expired SVIDs, throwing listeners. */
  error(obj: object, msg?: string): void;
}

/** A Logger that discards everything: the default. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
