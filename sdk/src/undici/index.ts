export { SpiffeDispatcher } from './spiffe-dispatcher.js';
export type { SpiffeDispatcherOptions } from './spiffe-dispatcher.js';
