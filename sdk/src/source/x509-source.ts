/**
 * The seam between where credentials come from (a folder, the Workload API, a test) and what uses
 * them (TLS servers, clients, dispatchers). Consumers ask current() on every handshake and listen
 * for 'update' to drop state tied to the old material (session tickets, pooled connections).
 */
import type { X509BundleSource } from '../x509/bundle.js';
import type { X509BundleSet } from '../x509/bundle-set.js';
import type { X509Svid } from '../x509/svid.js';

/** One consistent generation: the SVID and the bundles that were current together. */
export interface X509Material {
  /** This workload's SVID. */
  readonly svid: X509Svid;
  /** The trust bundles, one per trust domain. */
  readonly bundles: X509BundleSet;
}

/** Called with the new material on every update. */
export type X509UpdateListener = (material: X509Material) => void;

/**
 * Where X.509 material comes from (a folder, a test, later the Workload API): what TLS servers,
 * clients and dispatchers read on every handshake, and follow through `update` events.
 */
export interface X509Source extends X509BundleSource {
  /** The current SVID. */
  getX509Svid(): X509Svid;
  /** The current trust bundles. */
  getX509Bundles(): X509BundleSet;
  /** SVID and bundles from the same generation; prefer it over two separate getters. */
  current(): X509Material;
  /** Follows updates; the listener gets each new generation. */
  on(event: 'update', listener: X509UpdateListener): this;
  /** Stops following updates. */
  off(event: 'update', listener: X509UpdateListener): this;
}
