/**
 * undici clients with SPIFFE mTLS: {@link SpiffeDispatcher}, and the `fetch` and `request` of the
 * very undici it is built on (pair them; Node's global fetch runs on another copy of undici).
 *
 * @packageDocumentation
 */
export { SpiffeDispatcher, type SpiffeDispatcherOptions } from './spiffe-dispatcher.js';
export { fetch, request } from './fetch.js';
