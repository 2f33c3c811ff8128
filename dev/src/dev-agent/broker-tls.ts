import type { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from '@spire-csi/sdk';
import { authorizeAny, authorizeOneOf } from '@spire-csi/sdk/authorize';
import { peerSpiffeId, spiffeServerCredentials, type GrpcAuthContextCarrier } from '@spire-csi/sdk/grpc';
import { StaticSource } from '@spire-csi/sdk/source';
import { createTlsServer, peerSpiffeId as tlsPeerSpiffeId } from '@spire-csi/sdk/tls';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import type { IssuedSvid } from './ca.js';
import type { TrustStore } from './trust-store.js';

/**
 * The Broker endpoint's side of mutual TLS: its SVID and the bundles it verifies clients with,
 * kept in an X509Source swapped on every rotation (new handshakes use the new material, open
 * connections are not disturbed), verified per trust domain by the SDK. Two ways to refuse a
 * client that is not a broker:
 *
 * - per call (grpcCredentials): the SDK's grpc-js credentials admit any verified client and the
 *   service answers PermissionDenied;
 * - at the connection (handshakeFront), as SPIRE does: grpc-js server credentials have no hook
 *   into the handshake (the SDK's gate runs per call), so a node:tls server from the SDK fronts the
 *   socket, destroys a refused client's connection right after its handshake, and hands only
 *   brokers' connections to grpc-js. The client sees a dropped connection, not a gRPC status.
 */
export class BrokerTls {
  private source: StaticSource | null = null;
  private material: { svid: IssuedSvid; trustVersion: number } | null = null;
  /** Client leaf (DER, base64) → SPIFFE ID, for connections the front admitted; counted per open connection. */
  private readonly admitted = new Map<string, { id: string; connections: number }>();

  /** Replaces the material when the SVID was reissued or the bundles changed. */
  update(svid: IssuedSvid, trust: TrustStore): void {
    if (this.material?.svid === svid && this.material.trustVersion === trust.version) return;
    this.material = { svid, trustVersion: trust.version };
    // Every trust domain the agent holds: a broker of a federated domain verifies against its own bundle.
    const bundles = new X509BundleSet(
      Object.entries(trust.caCertificates()).map(([id, der]) => X509Bundle.fromDer(id.slice('spiffe://'.length), der)),
    );
    const next = { svid: X509Svid.fromDer(svid.chainDer, svid.keyDer), bundles };
    if (this.source === null) this.source = new StaticSource(next);
    else this.source.set(next);
  }

  /** grpc-js credentials admitting every client whose SVID verifies; the service checks the allowlist per call. */
  grpcCredentials(logger: Logger): ServerCredentials {
    return spiffeServerCredentials(this.current, { authorize: authorizeAny(), logger });
  }

  /** A TLS server completing connections for `brokers` only; the others are dropped after their handshake. */
  handshakeFront(brokers: readonly string[], logger: Logger): (accept: (connection: Duplex) => void) => NetServer {
    const authorize = authorizeOneOf(...brokers);
    return (accept) =>
      // grpc-js clients offer only h2 and insist on it.
      createTlsServer(this.current, authorize, { ALPNProtocols: ['h2'], logger }, (socket) => {
        const id = tlsPeerSpiffeId(socket)?.toString();
        const leaf = socket.getPeerCertificate().raw;
        if (id === undefined || !Buffer.isBuffer(leaf)) return socket.destroy();
        const key = leaf.toString('base64');
        const record = this.admitted.get(key) ?? { id, connections: 0 };
        record.connections++;
        this.admitted.set(key, record);
        socket.once('close', () => {
          if (--record.connections === 0) this.admitted.delete(key);
        });
        accept(socket);
      });
  }

  /** The verified SPIFFE ID of a call's client: from the SDK's grpc credentials, or the front that admitted its connection. */
  callerId(call: GrpcAuthContextCarrier): string | undefined {
    const verified = peerSpiffeId(call);
    if (verified) return verified.toString();
    let leaf: unknown;
    try {
      leaf = call.getAuthContext()?.sslPeerCertificate?.raw;
    } catch {
      return undefined;
    }
    return Buffer.isBuffer(leaf) ? this.admitted.get(leaf.toString('base64'))?.id : undefined;
  }

  private get current(): StaticSource {
    if (this.source === null) throw new Error('dev-agent: the broker server SVID has not been issued yet');
    return this.source;
  }
}
