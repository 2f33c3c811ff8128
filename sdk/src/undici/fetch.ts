/**
 * undici's fetch and request, taken from the `undici` package this SDK depends on.
 *
 * A Dispatcher works only with the fetch of the undici copy it was made for. Node's global fetch
 * runs on the undici bundled inside Node (one version per Node release), and the Dispatcher
 * contract changes between undici majors (undici 7 replaced the handler callbacks), so an npm
 * undici Agent handed to the global fetch breaks as soon as the two copies diverge. SpiffeDispatcher
 * extends this SDK's undici; these exports are that same undici, so the pair cannot drift apart.
 */
import * as undici from 'undici';

/**
 * undici's `fetch`, from the undici `SpiffeDispatcher` is built on: pass the dispatcher as
 * `{ dispatcher }`. Node's global fetch uses Node's own bundled undici and may not accept it.
 */
export const fetch: typeof undici.fetch = undici.fetch;

/**
 * undici's `request`, from the undici `SpiffeDispatcher` is built on: pass the dispatcher as
 * `{ dispatcher }`.
 */
export const request: typeof undici.request = undici.request;
