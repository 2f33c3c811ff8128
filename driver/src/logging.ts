import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { LogLevel } from './config/driver-config.js';

export type DriverLogger = PinoLogger;

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

export function createLogger(level: LogLevel, destination?: DestinationStream): DriverLogger {
  return pino(
    {
      level,
      base: { component: 'spire-csi-driver' },
      redact: { paths: SECRET_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
