import { lstat, unlink } from 'node:fs/promises';
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type ServerWritableStream,
  type status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';

/** How long a graceful shutdown may wait for clients before connections are cut. */
const GRACE_MS = 1_000;

/** A gRPC server on one unix socket that can be closed and reopened on the same path. */
export class UnixGrpcEndpoint {
  private constructor(
    readonly socketPath: string,
    private readonly server: Server,
  ) {}

  static async listen(
    socketPath: string,
    service: ServiceDefinition,
    handlers: UntypedServiceImplementation,
  ): Promise<UnixGrpcEndpoint> {
    const server = new Server();
    server.addService(service, handlers);
    await removeStaleSocket(socketPath);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${socketPath}`, ServerCredentials.createInsecure(), (error) =>
        error ? reject(new Error(`dev-agent: cannot listen on ${socketPath}: ${error.message}`)) : resolve(),
      ),
    );
    return new UnixGrpcEndpoint(socketPath, server);
  }

  /** Graceful first so statuses already sent reach the clients; forced if a client lingers. */
  async close(): Promise<void> {
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

/** Ends a server stream with a status, after any messages already written. */
export function endWithStatus(call: ServerWritableStream<unknown, unknown>, code: status, details: string): void {
  if (call.cancelled || call.writableEnded) return;
  call.emit('error', Object.assign(new Error(details), { code, details }));
}

/** A socket left by a previous run would make bind fail; anything that is not a socket is left alone. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSocket()) await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
