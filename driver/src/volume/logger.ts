import type { Logger } from '@spire-csi/sdk';

/** A pino logger satisfies this; `child` is optional so plain test loggers work too. */
export interface DriverLogger extends Logger {
  child?(bindings: Record<string, unknown>): Logger;
}

/** pino's child when available, else a wrapper that merges the bindings into every call. */
export function childLogger(logger: DriverLogger, bindings: Record<string, unknown>): Logger {
  if (typeof logger.child === 'function') return logger.child(bindings);
  const merge = (obj: object): object => ({ ...bindings, ...obj });
  return {
    debug: (obj, msg) => logger.debug(merge(obj), msg),
    info: (obj, msg) => logger.info(merge(obj), msg),
    warn: (obj, msg) => logger.warn(merge(obj), msg),
    error: (obj, msg) => logger.error(merge(obj), msg),
  };
}
