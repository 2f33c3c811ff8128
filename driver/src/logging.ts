import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { Logger } from '@spire-csi/sdk';
import type { LogLevel } from './config/driver-config.js';

/** The driver's logger: pino's, or any SDK Logger (tests); `child` is optional so plain test loggers fit. */
export interface DriverLogger extends Logger {
  child?(bindings: Record<string, unknown>): DriverLogger;
}

/** pino's child when available, else a wrapper that merges the bindings into every call. */
export function childLogger(logger: DriverLogger, bindings: Record<string, unknown>): DriverLogger {
  if (typeof logger.child === 'function') return logger.child(bindings);
  const merge = (obj: object): object => ({ ...bindings, ...obj });
  return {
    debug: (obj, msg) => logger.debug(merge(obj), msg),
    info: (obj, msg) => logger.info(merge(obj), msg),
    warn: (obj, msg) => logger.warn(merge(obj), msg),
    error: (obj, msg) => logger.error(merge(obj), msg),
  };
}

/**
 * Field names that could carry private material. Nothing in the driver logs them on purpose;
 * the redaction is a second line of defence for objects logged whole (a gRPC request, an error).
 */
const SECRET_PATHS = [
  'secrets',
  '*.secrets',
  'keyDer',
  '*.keyDer',
  'x509_svid_key',
  '*.x509_svid_key',
  'privateKey',
  '*.privateKey',
  'token',
  '*.token',
];

/** pino, which satisfies DriverLogger with its own `child`. */
export function createLogger(level: LogLevel, destination?: DestinationStream): PinoLogger {
  return pino(
    {
      level,
      // `name`, not `component`: the parts of the driver log through children that add their own
      // `component`, and JSON with the same key twice is read differently by different tools.
      base: { name: 'spire-csi-driver' },
      redact: { paths: SECRET_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
