/**
 * An immutable map of trust domain → X509Bundle. Immutability is what makes hot swapping safe:
 * an in-flight handshake keeps the set it started with while sources publish a new one.
 */
import type { X509Certificate } from 'node:crypto';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { X509Bundle, toTrustDomain, type X509BundleSource } from './bundle.js';
import { X509Error } from './errors.js';

/**
 * One {@link X509Bundle} per trust domain, immutable: a handshake in progress keeps the set it
 * started with while a source publishes a new one.
 */
export class X509BundleSet implements X509BundleSource {
  private readonly byName: ReadonlyMap<string, X509Bundle>;

  /** Throws an {@link X509Error} (`bundle`) for two bundles of one trust domain. */
  constructor(bundles: Iterable<X509Bundle> = []) {
    const map = new Map<string, X509Bundle>();
    for (const bundle of bundles) {
      if (!(bundle instanceof X509Bundle)) throw new X509Error('bundle', 'bundle set entries must be X509Bundle objects');
      const name = bundle.trustDomain.name;
      // Two bundles for one domain would make "which one verifies" order-dependent.
      if (map.has(name)) throw new X509Error('bundle', `more than one bundle for trust domain "${name}"`);
      map.set(name, bundle);
    }
    this.byName = map;
  }

  /** How many trust domains the set has a bundle for. */
  get size(): number {
    return this.byName.size;
  }

  /** The bundle of `td`, if any. */
  get(td: TrustDomain | string): X509Bundle | undefined {
    return this.byName.get(toTrustDomain(td).name);
  }

  /** True when the set has a bundle for `td`. */
  has(td: TrustDomain | string): boolean {
    return this.byName.has(toTrustDomain(td).name);
  }

  /** {@inheritDoc X509BundleSource.getX509BundleForTrustDomain} */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.get(td);
  }

  /** The trust domains of the set. */
  trustDomains(): TrustDomain[] {
    return [...this.byName.values()].map((bundle) => bundle.trustDomain);
  }

  /** The bundles of the set. */
  bundles(): X509Bundle[] {
    return [...this.byName.values()];
  }

  /** Every authority across domains (e.g. to advertise CA names); never use it to verify. */
  allAuthorities(): X509Certificate[] {
    return this.bundles().flatMap((bundle) => [...bundle.authorities]);
  }

  /** A new set with `bundle` added or replacing the one for its domain. */
  with(bundle: X509Bundle): X509BundleSet {
    const rest = this.bundles().filter((b) => !b.trustDomain.equals(bundle.trustDomain));
    return new X509BundleSet([...rest, bundle]);
  }

  /** A new set without `td`. */
  without(td: TrustDomain | string): X509BundleSet {
    const name = toTrustDomain(td).name;
    return new X509BundleSet(this.bundles().filter((b) => b.trustDomain.name !== name));
  }

  /** Same trust domains with equal bundles. */
  equals(other: X509BundleSet): boolean {
    if (!(other instanceof X509BundleSet) || other.size !== this.size) return false;
    return this.bundles().every((bundle) => other.get(bundle.trustDomain)?.equals(bundle) === true);
  }

  /** The bundles, one per trust domain. */
  [Symbol.iterator](): IterableIterator<X509Bundle> {
    return this.byName.values();
  }
}
