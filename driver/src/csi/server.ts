import {
  Server,
  ServerCredentials,
  status,
  type ServerUnaryCall,
  type ServiceClientConstructor,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import { loadProtos, type LoadedProtos } from '../proto/load.js';
import { CsiError } from './errors.js';
import type { CsiIdentity } from './identity-service.js';
import type { CsiNode } from './node-service.js';
import { POD_INFO_KEYS } from './validation.js';

export interface CsiServerOptions {
  /** `unix:///absolute/path/csi.sock` (the CSI convention) or a bare absolute path. */
  readonly endpoint: string;
  readonly identity: CsiIdentity;
  readonly node: CsiNode;
  readonly logger?: Logger;
  /** Already loaded definitions, to share one load with other components. */
  readonly protos?: LoadedProtos;
  /** How long stop() lets in-flight calls finish before cutting them off. Default 5 s. */
  readonly shutdownGraceMs?: number;
}

export interface CsiServer {
  readonly socketPath: string;
  /** Graceful, then forced after the grace period; removes the socket file. Idempotent. */
  stop(): Promise<void>;
}

export class CsiServerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`csi: ${message}`, options);
    this.name = 'CsiServerError';
  }
}

const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;
/**
 * gRPC carries the status message in a trailer; one of a few hundred KiB (say, an echoed
 * megabyte-long request field) is never delivered and the caller hangs until its deadline.
 */
export const MAX_STATUS_DETAILS_CHARS = 4096;

/** Returns the socket path of a `unix:///abs/path` endpoint (or of a bare absolute path). */
export function parseCsiEndpoint(endpoint: string): string {
  const path = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (path === '' || !isAbsolute(path) || /^[a-z][a-z0-9+.-]*:/i.test(path) || path.includes('\0')) {
    throw new CsiServerError(
      `endpoint ${JSON.stringify(endpoint)} is not a unix socket; use unix:///absolute/path/csi.sock`,
    );
  }
  return path;
}

export async function startCsiServer(options: CsiServerOptions): Promise<CsiServer> {
  const socketPath = parseCsiEndpoint(options.endpoint);
  const logger = options.logger ?? silentLogger;
  const protos = options.protos ?? loadProtos();
  const { identity, node } = options;

  const server = new Server();
  server.addService(
    protos.csi.Identity.service,
    withUnimplemented(protos.csi.Identity, {
      GetPluginInfo: unary('GetPluginInfo', logger, () => identity.getPluginInfo()),
      GetPluginCapabilities: unary('GetPluginCapabilities', logger, () => identity.getPluginCapabilities()),
      Probe: unary('Probe', logger, () => identity.probe()),
    }),
  );
  server.addService(
    protos.csi.Node.service,
    withUnimplemented(protos.csi.Node, {
      NodeGetInfo: unary('NodeGetInfo', logger, () => node.getInfo()),
      NodeGetCapabilities: unary('NodeGetCapabilities', logger, () => node.getCapabilities()),
      NodePublishVolume: unary('NodePublishVolume', logger, (req, signal) => node.publishVolume(req, signal)),
      NodeUnpublishVolume: unary('NodeUnpublishVolume', logger, (req) => node.unpublishVolume(req)),
    }),
  );
  // The Controller and other services are not registered: grpc-js answers UNIMPLEMENTED for them.

  await prepareSocketPath(socketPath);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (err) => {
      if (err) reject(new CsiServerError(`cannot listen on ${socketPath}: ${err.message}`, { cause: err }));
      else resolve();
    });
  });
  logger.info({ socket: socketPath }, 'CSI server listening');

  let stopping: Promise<void> | undefined;
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  return {
    socketPath,
    stop() {
      stopping ??= shutdown(server, graceMs, socketPath, logger);
      return stopping;
    },
  };
}

/** Successful calls of other methods (Probe runs every few seconds) are logged at debug only. */
const VOLUME_METHODS = new Set(['NodePublishVolume', 'NodeUnpublishVolume']);

type Handler<Req> = (request: Req, signal: AbortSignal) => Promise<object>;

/** Adapts a promise-returning handler: error mapping, cancellation and one log line per call. */
function unary<Req extends object>(method: string, logger: Logger, handler: Handler<Req>): UntypedHandleCall {
  const routine = !VOLUME_METHODS.has(method);
  return (call: ServerUnaryCall<Req, object>, callback: sendUnaryData<object>) => {
    const started = performance.now();
    const controller = new AbortController();
    let settled = false;
    // grpc-js also reports 'cancelled' when the stream closes after a response: only abort work in flight.
    call.on('cancelled', () => {
      if (!settled) controller.abort(new CsiError(status.CANCELLED, `${method} was cancelled by the caller`));
    });
    const fields = describeRequest(method, call.request);
    const finish = (code: status, error?: { message: string; internal?: string }): void => {
      settled = true;
      const entry = {
        ...fields,
        code: status[code],
        duration_ms: Math.round((performance.now() - started) * 10) / 10,
        ...(error ? { error: error.internal ?? error.message } : {}),
      };
      if (code === status.OK) {
        if (routine) logger.debug(entry, `${method} OK`);
        else logger.info(entry, `${method} OK`);
      } else if (code === status.INTERNAL || code === status.UNKNOWN) {
        logger.error(entry, `${method} failed`);
      } else {
        logger.warn(entry, `${method} failed`);
      }
    };
    Promise.resolve()
      .then(() => handler(call.request, controller.signal))
      .then(
        (response) => {
          finish(status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const { code, message, internal } = toStatus(method, err);
          finish(code, { message, internal });
          callback({ code, details: boundDetails(message) });
        },
      );
  };
}

export function boundDetails(message: string): string {
  if (message.length <= MAX_STATUS_DETAILS_CHARS) return message;
  return `${message.slice(0, MAX_STATUS_DETAILS_CHARS)}... (message truncated from ${message.length} characters)`;
}

function toStatus(method: string, err: unknown): { code: status; message: string; internal?: string } {
  if (err instanceof CsiError) return { code: err.code, message: err.message };
  // The caller gets a fixed message; the cause goes to the driver log only.
  const internal = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { code: status.INTERNAL, message: `${method} failed inside the driver; see the driver logs`, internal };
}

/**
 * The fields safe to log: never `secrets`, `mount_flags` or the whole volume_context (kubelet
 * may put service account tokens there).
 */
function describeRequest(method: string, request: unknown): Record<string, string> {
  const fields: Record<string, string> = { method };
  if (typeof request !== 'object' || request === null) return fields;
  const r = request as { volume_id?: unknown; target_path?: unknown; volume_context?: unknown };
  if (typeof r.volume_id === 'string' && r.volume_id !== '') fields.volume_id = r.volume_id;
  if (typeof r.target_path === 'string' && r.target_path !== '') fields.target_path = r.target_path;
  if (typeof r.volume_context === 'object' && r.volume_context !== null) {
    const context = r.volume_context as Record<string, unknown>;
    const namespace = context[POD_INFO_KEYS.namespace];
    const name = context[POD_INFO_KEYS.name];
    if (typeof namespace === 'string' && typeof name === 'string') fields.pod = `${namespace}/${name}`;
  }
  return fields;
}

/** Every method of the service without a handler answers UNIMPLEMENTED with a readable reason. */
function withUnimplemented(
  service: ServiceClientConstructor,
  handlers: Record<string, UntypedHandleCall>,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = { ...handlers };
  for (const method of Object.keys(service.service)) {
    implementation[method] ??= (_call: ServerUnaryCall<object, object>, callback: sendUnaryData<object>) => {
      callback({
        code: status.UNIMPLEMENTED,
        details: `${method} is not implemented: this is a node-only driver for ephemeral inline volumes`,
      });
    };
  }
  return implementation;
}

/** Removes a socket left by a previous run; anything else at the path, or a live server, is an error. */
async function prepareSocketPath(socketPath: string): Promise<void> {
  await mkdir(dirname(socketPath), { recursive: true });
  let entry;
  try {
    entry = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new CsiServerError(`cannot inspect ${socketPath}: ${(err as Error).message}`, { cause: err });
  }
  if (!entry.isSocket()) {
    throw new CsiServerError(`${socketPath} exists and is not a socket; refusing to remove it`);
  }
  if (await isAccepting(socketPath)) {
    throw new CsiServerError(`another process is already serving ${socketPath}`);
  }
  await unlink(socketPath);
}

function isAccepting(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function shutdown(server: Server, graceMs: number, socketPath: string, logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      logger.warn({ socket: socketPath, grace_ms: graceMs }, 'CSI calls still running after the grace period; forcing shutdown');
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  try {
    if ((await lstat(socketPath)).isSocket()) await unlink(socketPath);
  } catch {
    // Already gone.
  }
  logger.info({ socket: socketPath }, 'CSI server stopped');
}
