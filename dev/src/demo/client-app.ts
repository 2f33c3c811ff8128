import { setTimeout as sleep } from 'node:timers/promises';
import { authorizeId, SpiffeDispatcher, type Logger, type X509Source } from '@spire-csi/sdk';
import type { DemoState } from './state.js';

export interface ClientAppOptions {
  readonly url: string;
  /** The ID the server must present, and the ID the server must report having verified for us. */
  readonly serverId: string;
  readonly clientId: string;
  readonly intervalMs: number;
}

export interface RunningClientApp {
  /** Finishes the request in flight, then closes the dispatcher. */
  close(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 5_000;

/**
 * The client pod's application: undici over a SpiffeDispatcher that follows the pod's
 * credential folder and accepts only the server pod's SPIFFE ID, sending one request every
 * `intervalMs` for as long as the demo runs.
 */
export function startClientApp(source: X509Source, options: ClientAppOptions, state: DemoState, logger: Logger): RunningClientApp {
  const dispatcher = new SpiffeDispatcher(source, authorizeId(options.serverId), {
    logger,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  const stop = new AbortController();

  const once = async (): Promise<void> => {
    try {
      const response = await dispatcher.request({ origin: options.url, path: '/', method: 'GET' });
      const body = await response.body.text();
      if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}: ${body.slice(0, 200)}`);
      const { peer } = JSON.parse(body) as { peer?: unknown };
      if (peer !== options.clientId) throw new Error(`the server verified ${String(peer)}, expected ${options.clientId}`);
      state.requestSucceeded();
    } catch (error) {
      // Counted even while stopping: close() lets this request finish before anything shuts down.
      state.requestFailed(error);
    }
  };

  const loop = (async () => {
    while (!stop.signal.aborted) {
      const started = Date.now();
      await once();
      const wait = Math.max(0, options.intervalMs - (Date.now() - started));
      await sleep(wait, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  })();

  return {
    async close() {
      stop.abort();
      await loop;
      await dispatcher.close();
    },
  };
}
