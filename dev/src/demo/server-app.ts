import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { authorizeId, createHttpsServer, peerSpiffeId, SPIFFE_AUTHORIZATION_FAILED, type Logger, type X509Source } from '@spire-csi/sdk';
import { messageOf } from './errors.js';
import type { DemoState } from './state.js';

export interface RunningServerApp {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The server pod's application: an HTTPS server whose certificate and trust follow the pod's
 * credential folder, accepting only the client pod's SPIFFE ID. It answers with the ID it
 * verified, so the client can check the server saw who it really is.
 */
export async function startServerApp(
  source: X509Source,
  clientId: string,
  state: DemoState,
  logger: Logger,
): Promise<RunningServerApp> {
  const server: Server = createHttpsServer(source, authorizeId(clientId), { logger }, (request, response) => {
    state.requestServed();
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ peer: peerSpiffeId(request)?.toString() ?? null }));
  });
  server.on(SPIFFE_AUTHORIZATION_FAILED, (error: unknown) =>
    state.note(`server rejected a peer: ${messageOf(error)}`, 'failure'),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
