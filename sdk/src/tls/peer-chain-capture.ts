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
 * The chain is read with `getPeerX509Certificate()` and its `issuerCertificate` links, not with
 * `getPeerCertificate(true)`: on a server the X509Certificate Node returns carries every
 * certificate the peer sent after its leaf, in the order sent (Node moves them out of OpenSSL's
 * peer chain into the object, which is the truncation above), and building it costs a few
 * microseconds where the legacy detailed object (fingerprints, parsed names, a trust-store lookup
 * for every certificate) costs 0.1–0.3 ms per handshake. The certificates also reach the verifier
 * already parsed. The consequence, the same as on Node 24.21 by itself: once a socket has passed
 * the gate, `socket.getPeerCertificate(true)` no longer lists the client's intermediates (the
 * leaf, `peerSpiffeId()` and `socket.getPeerX509Certificate()` are unaffected).
 *
 * Building those issuer links duplicates each certificate after the leaf inside OpenSSL, which
 * OpenSSL 3.0 (Node 20) does slowly: ~0.1 ms per certificate on the bench VM, against a few
 * microseconds on OpenSSL 3.5 (Node 22, 24; Node 24.21 also does it itself for every socket).
 * There, a returning peer is first looked up by its leaf's fingerprint (`getPeerCertificate(false)`
 * leaves the chain alone) among the verifications that do not depend on the rest of the chain
 * (X509SvidVerificationCache.verifiedLeaf), and the chain is read only when that finds nothing.
 */
import type { X509Certificate } from 'node:crypto';
import type { Server, TLSSocket } from 'node:tls';
import type { VerifiedSvid } from '../x509/verify.js';

/** Far more than any real chain, and one more than the verifier accepts, so it can refuse it. */
const MAX_CHAIN = 33;

/** Marks a socket whose 'secure' listener is installed but has not fired yet. */
const PENDING = null;

/** See the header: whether to try the leaf's fingerprint before reading the chain, by default. */
export const LEAF_FIRST_BY_DEFAULT = /^3\.0\./.test(process.versions.openssl ?? '');

/** What the gate verifies: a remembered verification found by the leaf, or the presented chain. */
export type PresentedPeer =
  | { readonly verified: VerifiedSvid; readonly chain?: undefined }
  | { readonly verified?: undefined; readonly chain: X509Certificate[] };

export interface PeerChainCaptureOptions {
  /**
   * A verification that the leaf alone decides, by the leaf's fingerprint256; undefined when
   * there is none (the chain is then read). Must not throw.
   */
  readonly verifiedLeaf?: (fingerprint256: string) => VerifiedSvid | undefined;
  /** Try verifiedLeaf before reading the chain. Default LEAF_FIRST_BY_DEFAULT. */
  readonly leafFirst?: boolean;
}

/** The presented chain, leaf first; empty when the peer sent no certificate. */
export function presentedChainOf(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  for (let cert = socket.getPeerX509Certificate(); cert !== undefined && chain.length < MAX_CHAIN; cert = cert.issuerCertificate) {
    chain.push(cert);
  }
  return chain;
}

export class PeerChainCapture {
  private readonly peers = new WeakMap<TLSSocket, PresentedPeer | typeof PENDING>();
  private readonly verifiedLeaf: ((fingerprint256: string) => VerifiedSvid | undefined) | undefined;
  private readonly onKeylog = (_line: Buffer, socket: TLSSocket): void => {
    if (this.peers.has(socket)) return;
    this.peers.set(socket, PENDING);
    socket.prependOnceListener('secure', () => {
      this.peers.set(socket, this.read(socket));
    });
  };

  /** Stays for the server's lifetime: peers are verified for as long as it accepts them. */
  constructor(server: Server, options: PeerChainCaptureOptions = {}) {
    this.verifiedLeaf = (options.leafFirst ?? LEAF_FIRST_BY_DEFAULT) ? options.verifiedLeaf : undefined;
    server.on('keylog', this.onKeylog);
  }

  /**
   * What the peer presented. Falls back to asking the socket now when nothing was captured (a
   * handshake that logged no secret, or a socket accepted before attaching).
   */
  take(socket: TLSSocket): PresentedPeer {
    const captured = this.peers.get(socket);
    this.peers.delete(socket);
    return captured ?? this.read(socket);
  }

  private read(socket: TLSSocket): PresentedPeer {
    if (this.verifiedLeaf !== undefined) {
      // The abbreviated form reads the leaf only and leaves OpenSSL's peer chain as it is.
      const fingerprint: unknown = socket.getPeerCertificate(false)?.fingerprint256;
      const verified = typeof fingerprint === 'string' ? this.verifiedLeaf(fingerprint) : undefined;
      if (verified !== undefined) return { verified };
    }
    return { chain: presentedChainOf(socket) };
  }
}
