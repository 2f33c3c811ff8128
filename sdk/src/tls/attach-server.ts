/**
 * Puts an existing tls/https/http2 secure server under SPIFFE mTLS driven by an X509Source.
 *
 * OpenSSL only pre-filters (client certificate required, chains to SOME federated root). The
 * authoritative check runs when a handshake completes, for full and resumed handshakes alike:
 * the peer must chain to its own trust domain's CURRENT bundle and pass the Authorizer. The
 * server's own connection listeners (the http/https/http2 machinery, or the application's
 * secureConnection handler) are moved behind that check, so a rejected socket is destroyed
 * before anything that could read from it ever sees it.
 */
import type { Server, TLSSocket } from 'node:tls';
import type { Authorizer } from '../authorize/authorizer.js';
import { silentLogger, type Logger } from '../logger.js';
import type { X509Material, X509Source } from '../source/x509-source.js';
import { messageOf } from '../internal/error-text.js';
import { TlsError } from './errors.js';
import { IntermediatePool } from './intermediate-pool.js';
import { PeerChainCapture } from './peer-chain-capture.js';
import { recordPeerSpiffeId } from './peer-id.js';
import { serverSecureContextOptions } from './server-options.js';
import { rejectManagedOptions, type TlsSettings } from './tls-settings.js';
import { authorizePeer, peerVerificationCache, verifyPeer } from './verify-peer.js';

/** Emitted on the server with `(error: Error, socket: TLSSocket)` after a peer was rejected. */
export const SPIFFE_AUTHORIZATION_FAILED = 'spiffeAuthorizationFailed';

/** Options of {@link attachSpiffeTls}. */
export interface SpiffeServerOptions {
  /** Where refused peers and credential updates are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
  /** TLS tunables re-applied with every credential update; settings already on the server are kept. */
  tlsSettings?: TlsSettings;
}

/** What {@link attachSpiffeTls} returns. */
export interface SpiffeTlsBinding {
  /**
   * Stops following source updates (done automatically when the server closes, and resumed when
   * it listens again). Peers are still verified against the source afterwards.
   */
  close(): void;
}

type ConnectionListener = (this: Server, socket: TLSSocket) => void;

/** Server fields node:tls reads when it builds a context or accepts a socket. Not in @types/node. */
interface ServerTlsFields {
  requestCert?: boolean;
  rejectUnauthorized?: boolean;
  ciphers?: string;
  sigalgs?: string;
  ecdhCurve?: string;
  dhparam?: string | Buffer;
  maxVersion?: TlsSettings['maxVersion'];
  minVersion?: TlsSettings['minVersion'];
  honorCipherOrder?: boolean;
  secureOptions?: number;
  sessionIdContext?: string;
  sessionTimeout?: number;
}

const attachedServers = new WeakSet<Server>();

/** Keeps what the application configured at construction, since setSecureContext would reset it. */
function settingsOf(server: Server): TlsSettings {
  const f = server as Server & ServerTlsFields;
  const kept: TlsSettings = {
    ciphers: f.ciphers,
    sigalgs: f.sigalgs,
    ecdhCurve: f.ecdhCurve,
    dhparam: f.dhparam,
    maxVersion: f.maxVersion,
    honorCipherOrder: f.honorCipherOrder,
    secureOptions: f.secureOptions,
    sessionIdContext: f.sessionIdContext,
    sessionTimeout: f.sessionTimeout,
  };
  // A floor below TLS 1.2 is dropped rather than refused: our own floor replaces it.
  if (f.minVersion === 'TLSv1.3') kept.minVersion = 'TLSv1.3';
  return Object.fromEntries(Object.entries(kept).filter(([, v]) => v !== undefined)) as TlsSettings;
}

/**
 * Puts a `tls`/`https`/`http2` secure server you built under SPIFFE mTLS from `source`, as the
 * create*Server functions do. Throws a {@link TlsError} (`config`) without an authorizer or when
 * the server is already attached.
 */
export function attachSpiffeTls(
  server: Server,
  source: X509Source,
  authorizer: Authorizer,
  options: SpiffeServerOptions = {},
): SpiffeTlsBinding {
  if (typeof authorizer !== 'function') {
    throw new TlsError('config', 'an Authorizer is required (use authorizeAny() to accept every verified peer)');
  }
  if (attachedServers.has(server)) throw new TlsError('config', 'this server is already attached to an X509Source');
  rejectManagedOptions(options.tlsSettings ?? {}, 'attachSpiffeTls');
  const logger = options.logger ?? silentLogger;
  const settings: TlsSettings = { ...settingsOf(server), ...options.tlsSettings };

  const apply = (material: X509Material): void => {
    server.setSecureContext(serverSecureContextOptions(material, settings));
  };
  // First, so a source that is not ready throws before the server was modified.
  apply(source.current());
  attachedServers.add(server);
  const fields = server as Server & ServerTlsFields;
  // Sockets copy these from the server when accepted; setSecureContext does not set them on Node 20.
  fields.requestCert = true;
  fields.rejectUnauthorized = true;

  const reject = (socket: TLSSocket, error: Error): void => {
    const peer = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, resumed: socket.isSessionReused() };
    // Synchronously inside the 'secureConnection' emit, before the listeners we hold back (and
    // before any added later, which then see a destroyed socket): nothing has read from it.
    socket.destroy();
    logger.warn({ ...peer, reason: error.message }, 'tls: peer rejected');
    server.emit(SPIFFE_AUTHORIZATION_FAILED, error, socket);
  };

  const intermediates = new IntermediatePool();
  const presented = new PeerChainCapture(server, {
    verifiedLeaf: (fingerprint256) => {
      try {
        return peerVerificationCache.verifiedLeaf(fingerprint256, source.current().bundles);
      } catch {
        // A source that cannot answer now: the gate reads the chain and reports the problem.
        return undefined;
      }
    },
  });
  const inner = server.rawListeners('secureConnection') as ConnectionListener[];
  server.removeAllListeners('secureConnection');
  server.on('secureConnection', function gate(this: Server, socket: TLSSocket) {
    let verified;
    try {
      const peer = presented.take(socket);
      if (peer.verified !== undefined) {
        verified = authorizePeer(peer.verified, authorizer);
      } else {
        const chain = peer.chain;
        // A resumed session keeps only the leaf: offer intermediates from earlier verified chains.
        if (socket.isSessionReused() && chain.length > 0) chain.push(...intermediates.certificates());
        // The bundle set of this instant, not the source: the set is the immutable object the
        // verification cache is scoped to, so a trust change can never be answered from it.
        verified = verifyPeer(chain, source.current().bundles, authorizer);
      }
    } catch (err) {
      reject(socket, err instanceof Error ? err : new TlsError('rejected', messageOf(err)));
      return;
    }
    intermediates.remember(verified.chain);
    recordPeerSpiffeId(socket, verified.id);
    for (const listener of inner) listener.call(this, socket);
  });

  let following = false;
  let closed = false;
  const onUpdate = (material: X509Material): void => {
    try {
      apply(material);
      logger.info(
        { spiffeId: material.svid.id.toString(), serialNumber: material.svid.serialNumber },
        'tls: server credentials updated',
      );
    } catch (err) {
      logger.error({ reason: messageOf(err) }, 'tls: could not apply updated credentials; keeping the previous ones');
    }
  };
  const follow = (): void => {
    if (following || closed) return;
    source.on('update', onUpdate);
    following = true;
  };
  const unfollow = (): void => {
    if (!following) return;
    source.off('update', onUpdate);
    following = false;
  };
  server.on('close', unfollow);
  server.on('listening', () => {
    if (following || closed) return;
    // Updates were missed while closed.
    try {
      onUpdate(source.current());
    } finally {
      follow();
    }
  });
  follow();

  return {
    close(): void {
      closed = true;
      unfollow();
    },
  };
}
