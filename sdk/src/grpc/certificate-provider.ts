/**
 * grpc-js's hook for rotating credentials (experimental.CertificateProvider) fed by an X509Source.
 * grpc-js builds a new TLS context from the latest update for every new connection (client) or
 * swaps the server's context (server); connections already open keep the context they started
 * with, so a rotation never interrupts a call in flight.
 *
 * The CA list handed over is the union of every bundle's authorities: that is only OpenSSL's
 * first filter. The authoritative check (the peer chains to the bundle of ITS OWN trust domain,
 * then the Authorizer) runs in our code on top, see channel-credentials.ts and server-credentials.ts.
 */
import type { experimental } from '@grpc/grpc-js';
import type { X509Material, X509Source } from '../source/x509-source.js';
import { tlsCredentials } from '../tls/credentials.js';

type CaCertificateUpdate = experimental.CaCertificateUpdate;
type CaCertificateUpdateListener = experimental.CaCertificateUpdateListener;
type IdentityCertificateUpdate = experimental.IdentityCertificateUpdate;
type IdentityCertificateUpdateListener = experimental.IdentityCertificateUpdateListener;

interface Updates {
  readonly ca: CaCertificateUpdate;
  readonly identity: IdentityCertificateUpdate;
}

/** PEM buffers per material object: immutable, so each generation is converted once. */
const updatesCache = new WeakMap<X509Material, Updates>();

function updatesOf(material: X509Material): Updates {
  let updates = updatesCache.get(material);
  if (updates === undefined) {
    const { cert, key, ca } = tlsCredentials(material.svid, material.bundles);
    updates = Object.freeze({
      ca: { caCertificate: Buffer.from(ca.join(''), 'utf8') },
      identity: { certificate: Buffer.from(cert, 'utf8'), privateKey: Buffer.from(key, 'utf8') },
    });
    updatesCache.set(material, updates);
  }
  return updates;
}

/** An experimental.CertificateProvider serving one X509Source's SVID (identity) and bundles (CA). */
export class X509SourceCertificateProvider implements experimental.CertificateProvider {
  private readonly caListeners = new Set<CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<IdentityCertificateUpdateListener>();
  private subscribed = false;
  private readonly onUpdate = (material: X509Material): void => {
    const { ca, identity } = updatesOf(material);
    for (const listener of [...this.caListeners]) listener(ca);
    for (const listener of [...this.identityListeners]) listener(identity);
  };

  constructor(private readonly source: X509Source) {}

  addCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    this.follow();
    const material = this.currentMaterial();
    // Asynchronously, as grpc-js's own providers do: its server credentials register the watcher
    // that applies an update only after adding these listeners, so a synchronous first update
    // would be lost and the server would refuse every connection until the first rotation.
    if (material !== undefined) process.nextTick(() => this.caListeners.has(listener) && listener(updatesOf(material).ca));
  }

  removeCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
    this.unfollowWhenUnused();
  }

  addIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    this.follow();
    const material = this.currentMaterial();
    if (material !== undefined) {
      process.nextTick(() => this.identityListeners.has(listener) && listener(updatesOf(material).identity));
    }
  }

  removeIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
    this.unfollowWhenUnused();
  }

  /** The source's material, or undefined before its first load (the first 'update' delivers it). */
  private currentMaterial(): X509Material | undefined {
    try {
      return this.source.current();
    } catch {
      return undefined;
    }
  }

  private follow(): void {
    if (this.subscribed) return;
    this.subscribed = true;
    this.source.on('update', this.onUpdate);
  }

  /** Channels and servers come and go; a provider nobody listens to must not pin itself to the source. */
  private unfollowWhenUnused(): void {
    if (!this.subscribed || this.caListeners.size > 0 || this.identityListeners.size > 0) return;
    this.subscribed = false;
    this.source.off('update', this.onUpdate);
  }
}
