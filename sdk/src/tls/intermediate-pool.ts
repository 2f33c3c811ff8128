/**
 * Intermediates a server has seen in verified client chains. A resumed TLS session restores only
 * the peer's leaf (OpenSSL does not keep the presented chain in a session ticket), so re-verifying
 * a resumed connection from a workload whose SVID is signed by an intermediate needs that
 * intermediate from somewhere. Offering these certificates as extra path candidates is safe: they
 * are public, every signature is still checked, and the path must still end in the CURRENT bundle
 * of the leaf's own trust domain.
 */
import type { X509Certificate } from 'node:crypto';

/**
 * Real deployments have a handful of live intermediates; with the leaf this stays well under the
 * verifier's limit on presented certificates.
 */
const DEFAULT_CAPACITY = 16;

export class IntermediatePool {
  /** Parsed objects, not DER: a resumed handshake then needs no parsing before its (cached) check. */
  private readonly byFingerprint = new Map<string, X509Certificate>();

  constructor(private readonly capacity = DEFAULT_CAPACITY) {}

  /** `chain` is a verified path: leaf, intermediates, then the bundle authority. */
  remember(chain: readonly X509Certificate[]): void {
    for (const cert of chain.slice(1, -1)) {
      const key = cert.fingerprint256;
      // Re-inserting moves it to the back, so the least recently seen is evicted first.
      this.byFingerprint.delete(key);
      this.byFingerprint.set(key, cert);
      if (this.byFingerprint.size > this.capacity) {
        const oldest = this.byFingerprint.keys().next().value;
        if (oldest !== undefined) this.byFingerprint.delete(oldest);
      }
    }
  }

  certificates(): X509Certificate[] {
    return [...this.byFingerprint.values()];
  }
}
