export type { Clock, ClockTimer } from './clock.js';
export { systemClock, delay } from './clock.js';
