/**
 * An X509Source whose material is set by code: tests, or applications that obtain credentials
 * some other way and push them in. set() swaps and notifies synchronously, so once it returns every
 * consumer has already switched (new handshakes use the new material).
 */
import { EventEmitter } from 'node:events';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import type { X509Bundle } from '../x509/bundle.js';
import type { X509BundleSet } from '../x509/bundle-set.js';
import type { X509Svid } from '../x509/svid.js';
import type { X509Material, X509Source } from './x509-source.js';

/** The events of {@link StaticSource}. */
export interface StaticSourceEvents {
  /** Emitted by set(), before it returns. */
  update: [material: X509Material];
}

/**
 * An {@link X509Source} whose material is set by code: tests, static certificates, or credentials
 * obtained some other way and pushed in with set().
 */
export class StaticSource extends EventEmitter<StaticSourceEvents> implements X509Source {
  private material: X509Material;

  /** Starts with `material`. */
  constructor(material: X509Material) {
    super();
    this.material = StaticSource.snapshot(material);
    // Every server, agent and dispatcher subscribes; dozens of listeners is normal, not a leak.
    this.setMaxListeners(0);
  }

  /** {@inheritDoc X509Source.current} */
  current(): X509Material {
    return this.material;
  }

  /** {@inheritDoc X509Source.getX509Svid} */
  getX509Svid(): X509Svid {
    return this.material.svid;
  }

  /** {@inheritDoc X509Source.getX509Bundles} */
  getX509Bundles(): X509BundleSet {
    return this.material.bundles;
  }

  /** The current bundle of `td`, if any. */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.material.bundles.get(td);
  }

  /** Replaces the material, then emits 'update' before returning. */
  set(material: X509Material): void {
    this.material = StaticSource.snapshot(material);
    this.emit('update', this.material);
  }

  /** A frozen copy, so a caller mutating its object cannot change material behind our back. */
  private static snapshot(material: X509Material): X509Material {
    return Object.freeze({ svid: material.svid, bundles: material.bundles });
  }
}
