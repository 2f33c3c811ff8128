/**
 * The X.509 authorities of one trust domain. An empty bundle is meaningful: it distrusts the
 * domain (verification against it always fails), which is how a removed bundle is represented.
 */
import { X509Certificate } from 'node:crypto';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import { parseCertificateDer } from './certificate.js';
import { splitDer } from './der.js';
import { messageOf } from '../internal/error-text.js';
import { X509Error } from './errors.js';
import { decodePem, encodeCertificatesPem } from './pem.js';

/** Where verification looks up the X.509 authorities of a trust domain (go-spiffe's x509bundle.Source). */
export interface X509BundleSource {
  /** The bundle for `td`, or undefined when the domain is unknown (and therefore untrusted). */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined;
}

export function toTrustDomain(td: TrustDomain | string): TrustDomain {
  return td instanceof TrustDomain ? td : TrustDomain.parse(td);
}

function authorityFromDer(der: Uint8Array, index: number): X509Certificate {
  try {
    return parseCertificateDer(der);
  } catch (err) {
    throw new X509Error('bundle', `authority ${index} is not a valid DER certificate: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * The X.509 authorities (roots) of one trust domain. Immutable; an empty bundle distrusts its domain.
 */
export class X509Bundle {
  /** The trust domain these authorities are for. */
  readonly trustDomain: TrustDomain;
  /** The authorities, without duplicates. */
  readonly authorities: readonly X509Certificate[];

  /** Throws an {@link X509Error} (`bundle`) when an entry is not an X509Certificate. */
  constructor(td: TrustDomain | string, authorities: readonly X509Certificate[]) {
    this.trustDomain = toTrustDomain(td);
    // Duplicates are dropped so equality and "has authority" do not depend on how a source repeated them.
    const seen = new Set<string>();
    const unique: X509Certificate[] = [];
    for (const cert of authorities) {
      if (!(cert instanceof X509Certificate)) throw new X509Error('bundle', 'authorities must be X509Certificate objects');
      const key = cert.fingerprint256;
      if (seen.has(key)) continue;
      seen.add(key);
      unique.push(cert);
    }
    this.authorities = Object.freeze(unique);
  }

  /** CERTIFICATE blocks only; an empty document yields an empty (distrusting) bundle. Throws an {@link X509Error} (`bundle`). */
  static parse(td: TrustDomain | string, pem: string | Buffer): X509Bundle {
    let blocks;
    try {
      blocks = decodePem(typeof pem === 'string' ? pem : pem.toString('utf8'));
    } catch (err) {
      throw new X509Error('bundle', `bundle for "${toTrustDomain(td).name}": ${messageOf(err)}`, { cause: err });
    }
    const certs = blocks.map((block, i) => {
      if (block.label !== 'CERTIFICATE') {
        throw new X509Error('bundle', `bundle may only contain CERTIFICATE blocks, found "${block.label}"`);
      }
      return authorityFromDer(block.der, i);
    });
    return new X509Bundle(td, certs);
  }

  /** Concatenated DER, as the SPIRE APIs deliver bundles. */
  static fromDer(td: TrustDomain | string, der: Uint8Array): X509Bundle {
    let parts: Uint8Array[];
    try {
      parts = splitDer(der);
    } catch (err) {
      throw new X509Error('bundle', `bundle for "${toTrustDomain(td).name}" is not concatenated DER: ${messageOf(err)}`, {
        cause: err,
      });
    }
    return new X509Bundle(td, parts.map(authorityFromDer));
  }

  /** True without authorities: nothing of this trust domain verifies. */
  isEmpty(): boolean {
    return this.authorities.length === 0;
  }

  /** True when `cert` is one of the authorities (same DER). */
  hasAuthority(cert: X509Certificate): boolean {
    return this.authorities.some((a) => a.fingerprint256 === cert.fingerprint256 && a.raw.equals(cert.raw));
  }

  /** The authorities as PEM CERTIFICATE blocks. */
  toPem(): string {
    return encodeCertificatesPem(this.authorities.map((cert) => cert.raw));
  }

  /** The authorities as concatenated DER. */
  toDer(): Buffer {
    return Buffer.concat(this.authorities.map((cert) => cert.raw));
  }

  /** Same trust domain and the same set of authorities, in any order. */
  equals(other: X509Bundle): boolean {
    if (!(other instanceof X509Bundle) || !this.trustDomain.equals(other.trustDomain)) return false;
    if (this.authorities.length !== other.authorities.length) return false;
    return this.authorities.every((cert) => other.hasAuthority(cert));
  }

  /** A bundle is its own source for its trust domain, handy when only one domain is trusted. */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return td.equals(this.trustDomain) ? this : undefined;
  }
}
