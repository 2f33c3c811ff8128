import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import type { Registry } from 'prom-client';

export type Readiness = { readonly ready: true } | { readonly ready: false; readonly reason: string };

export interface MetricsServerOptions {
  /** `host:port`, `[v6]:port` or `:port` (every interface); port 0 picks a free one. */
  readonly address: string;
  readonly registry: Registry;
  /** Liveness beyond "the event loop answers"; defaults to always healthy. */
  readonly isHealthy?: () => boolean;
  readonly isReady: () => Readiness;
  readonly logger?: Logger;
}

export interface MetricsServer {
  /** The bound `host:port` (the real port when 0 was asked for). */
  readonly address: string;
  /** Stops listening and drops open connections (scrapers keep them alive). Idempotent. */
  close(): Promise<void>;
}

export class MetricsServerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`metrics: ${message}`, options);
    this.name = 'MetricsServerError';
  }
}

export const READY: Readiness = { ready: true };

const ROUTES = new Set(['/metrics', '/healthz', '/readyz']);

/** Splits a listen address; an empty host means every interface. */
export function parseListenAddress(address: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]*)):(\d{1,5})$/.exec(address);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65_535) {
    throw new MetricsServerError(`listen address "${address}" must be host:port with a port up to 65535, e.g. 0.0.0.0:9809`);
  }
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

/**
 * /metrics (Prometheus text format), /healthz and /readyz over plain HTTP. Only these three
 * answer; bodies are fixed strings or the registry, never anything from a request or a volume.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(options.address);
  const logger = options.logger ?? silentLogger;
  const server = createServer((req, res) => {
    handle(req, res, options, logger).catch((err: unknown) => {
      logger.error({ err, path: pathOf(req) }, 'metrics request failed');
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new MetricsServerError(`cannot listen on ${options.address}: ${err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'metrics server error'));
  const bound = formatAddress(server.address() as AddressInfo);
  logger.info({ address: bound }, 'metrics server listening');

  let closing: Promise<void> | undefined;
  return {
    address: bound,
    close() {
      closing ??= closeServer(server);
      return closing;
    },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, options: MetricsServerOptions, logger: Logger): Promise<void> {
  const path = pathOf(req);
  if (!ROUTES.has(path)) {
    reply(res, 404, 'not found\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    reply(res, 405, 'method not allowed\n');
    return;
  }
  if (path === '/metrics') {
    let body: string;
    try {
      body = await options.registry.metrics();
    } catch (err) {
      logger.error({ err }, 'collecting metrics failed');
      reply(res, 500, 'collecting metrics failed\n');
      return;
    }
    reply(res, 200, body, options.registry.contentType);
  } else if (path === '/healthz') {
    if (options.isHealthy?.() ?? true) reply(res, 200, 'ok\n');
    else reply(res, 503, 'unhealthy\n');
  } else {
    const readiness = checkReadiness(options.isReady, logger);
    if (readiness.ready) reply(res, 200, 'ok\n');
    else reply(res, 503, `${readiness.reason}\n`);
  }
}

function checkReadiness(isReady: () => Readiness, logger: Logger): Readiness {
  try {
    return isReady();
  } catch (err) {
    logger.error({ err }, 'readiness check threw');
    return { ready: false, reason: 'readiness check failed' };
  }
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

function reply(res: ServerResponse, statusCode: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.statusCode = statusCode;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // Node omits the body of a HEAD response by itself.
  res.end(body);
}

function formatAddress(info: AddressInfo): string {
  return info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
