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
  readonly svid: X509Svid;
  readonly bundles: X509BundleSet;
}

export type X509UpdateListener = (material: X509Material) => void;

export interface X509Source extends X509BundleSource {
  getX509Svid(): X509Svid;
  getX509Bundles(): X509BundleSet;
  /** SVID and bundles from the same generation; prefer it over two separate getters. */
  current(): X509Material;
  on(event: 'update', listener: X509UpdateListener): this;
  off(event: 'update', listener: X509UpdateListener): this;
}
