export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
// Also at @spire-csi/sdk/clock; here too because every source takes a `clock` option.
export type { Clock, ClockTimer } from './clock/clock.js';
export { systemClock } from './clock/clock.js';
export * from './spiffe-id/index.js';
export * from './x509/index.js';
export * from './authorize/index.js';
export * from './source/index.js';
export * from './tls/index.js';
export * from './undici/index.js';
export * from './jwt/index.js';
