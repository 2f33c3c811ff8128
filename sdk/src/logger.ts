/**
 * The logging surface the SDK needs. It is the subset of pino's API the SDK calls, so a pino
 * logger (or a child of one) can be passed as is; the default discards everything.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
