/**
 * Reads the certificate chain a client presented, before Node's own post-handshake step can
 * truncate it.
 *
 * Node 24.21 and 26.8+ (nodejs/node#65579) call `getPeerX509Certificate()` on the server socket
 * while authorizing it, and that call drops the client's intermediates from OpenSSL's peer chain.
 * By the time 'secureConnection' fires, `getPeerCertificate(true)` returns the leaf alone, so a
 * workload whose SVID is issued by an intermediate (SPIRE behind an UpstreamAuthority) could not
 * be verified. The chain is intact while the socket emits 'secure', but a server only learns of
 * its TLS sockets at 'secureConnection'. The one server event that hands over each socket during
 * every handshake, full or resumed, is 'keylog'; the first one is used to put a listener in front
 * of Node's 'secure' handler. The key-log line itself is ignored and never kept.
 *
 * On runtimes without the regression this reads the same chain a little earlier; enabling the
 * key-log callback costs nothing measurable next to the handshake (bench: within run-to-run noise).
 */
import type { Server, TLSSocket } from 'node:tls';
import { peerChainOf } from './verify-peer.js';

/** Marks a socket whose 'secure' listener is installed but has not fired yet. */
const PENDING = null;

export class PeerChainCapture {
  private readonly chains = new WeakMap<TLSSocket, Buffer[] | typeof PENDING>();
  private readonly onKeylog = (_line: Buffer, socket: TLSSocket): void => {
    if (this.chains.has(socket)) return;
    this.chains.set(socket, PENDING);
    socket.prependOnceListener('secure', () => {
      this.chains.set(socket, peerChainOf(socket.getPeerCertificate(true)));
    });
  };

  /** Stays for the server's lifetime: peers are verified for as long as it accepts them. */
  constructor(server: Server) {
    server.on('keylog', this.onKeylog);
  }

  /**
   * The chain the peer presented, leaf first. Falls back to asking the socket now when nothing
   * was captured (a handshake that logged no secret, or a socket accepted before attaching).
   */
  take(socket: TLSSocket): Buffer[] {
    const captured = this.chains.get(socket);
    this.chains.delete(socket);
    return captured ?? peerChainOf(socket.getPeerCertificate(true));
  }
}
