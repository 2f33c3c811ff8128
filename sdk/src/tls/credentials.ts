/**
 * Turns X509Material into what node:tls consumes. The CA list is a union over trust domains and
 * is only OpenSSL's first filter: the authoritative check (the peer chains to ITS OWN domain's
 * bundle) is verifyPeer, run on every connection.
 */
import type { X509BundleSet } from '../x509/bundle-set.js';
import type { X509Svid } from '../x509/svid.js';

export interface TlsCredentials {
  /** Leaf first, then intermediates. */
  readonly cert: string;
  /** PKCS#8 PEM. */
  readonly key: string;
  /**
   * Always an array: `ca: undefined` would make Node load the system roots, while `[]` trusts
   * nothing, which is the right answer when no trust domain is federated.
   */
  readonly ca: string[];
}

// Exporting a key to PEM per connection is wasteful; an SVID object is immutable, so cache by it.
const pemCache = new WeakMap<X509Svid, { cert: string; key: string }>();

function svidPem(svid: X509Svid): { cert: string; key: string } {
  let pem = pemCache.get(svid);
  if (!pem) {
    pem = { cert: svid.chainPem(), key: svid.privateKeyPem() };
    pemCache.set(svid, pem);
  }
  return pem;
}

export function trustAnchorsPem(bundles: X509BundleSet): string[] {
  return bundles
    .bundles()
    .filter((bundle) => !bundle.isEmpty())
    .flatMap((bundle) => bundle.authorities.map((cert) => cert.toString()));
}

export function tlsCredentials(svid: X509Svid, bundles: X509BundleSet): TlsCredentials {
  return { ...svidPem(svid), ca: trustAnchorsPem(bundles) };
}
