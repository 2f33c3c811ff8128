import { lstat, unlink } from 'node:fs/promises';
import type { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  Server,
  ServerCredentials,
  type Metadata,
  type ServiceDefinition,
  type ServerWritableStream,
  type status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';

/** How long a graceful shutdown may wait for clients before connections are cut. */
const GRACE_MS = 1_000;

/**
 * A gRPC server on one unix socket that can be closed and reopened on the same path. Plaintext
 * unless given credentials, or served through a front (a TLS server that decides which
 * connections grpc-js ever sees).
 */
export class UnixGrpcEndpoint {
  private constructor(
    readonly socketPath: string,
    private readonly server: Server,
    private readonly front: NetServer | null = null,
  ) {}

  static async listen(
    socketPath: string,
    service: ServiceDefinition,
    handlers: UntypedServiceImplementation,
    credentials: ServerCredentials = ServerCredentials.createInsecure(),
  ): Promise<UnixGrpcEndpoint> {
    const server = new Server();
    server.addService(service, handlers);
    await removeStaleSocket(socketPath);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${socketPath}`, credentials, (error) =>
        error ? reject(new Error(`dev-agent: cannot listen on ${socketPath}: ${error.message}`)) : resolve(),
      ),
    );
    return new UnixGrpcEndpoint(socketPath, server);
  }

  /**
   * Serves through `front`, built by the caller around `accept`: the front listens on the socket
   * and passes on only the connections it admits, already secured (e.g. TLS, whose handshake it
   * checked), to grpc-js, which speaks plaintext HTTP/2 over them.
   */
  static async listenBehind(
    socketPath: string,
    service: ServiceDefinition,
    handlers: UntypedServiceImplementation,
    makeFront: (accept: (connection: Duplex) => void) => NetServer,
  ): Promise<UnixGrpcEndpoint> {
    const server = new Server();
    server.addService(service, handlers);
    const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    const front = makeFront((connection) => injector.injectConnection(connection));
    await removeStaleSocket(socketPath);
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error) => reject(new Error(`dev-agent: cannot listen on ${socketPath}: ${error.message}`));
      front.once('error', failed);
      front.listen(socketPath, () => {
        front.off('error', failed);
        resolve();
      });
    });
    return new UnixGrpcEndpoint(socketPath, server, front);
  }

  /** Graceful first so statuses already sent reach the clients; forced if a client lingers. */
  async close(): Promise<void> {
    // No new connections; the ones open are ended below with the gRPC server's sessions.
    this.front?.close();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, GRACE_MS);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await removeStaleSocket(this.socketPath);
  }
}

export function writeMessage(call: ServerWritableStream<unknown, unknown>, message: object): void {
  if (call.cancelled || call.writableEnded) return;
  call.write(message);
}

/** Ends a server stream with a status (and trailers, e.g. rich error details), after any messages already written. */
export function endWithStatus(call: ServerWritableStream<unknown, unknown>, code: status, details: string, metadata?: Metadata): void {
  if (call.cancelled || call.writableEnded) return;
  call.emit('error', Object.assign(new Error(details), { code, details }, metadata ? { metadata } : {}));
}

/** Ends a server stream with OK, after any messages already written (the workload it served is gone). */
export function endOk(call: ServerWritableStream<unknown, unknown>): void {
  if (call.cancelled || call.writableEnded) return;
  call.end();
}

/** A socket left by a previous run would make bind fail; anything that is not a socket is left alone. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSocket()) await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
