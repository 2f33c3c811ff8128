/**
 * An immutable map of trust domain → X509Bundle. Immutability is what makes hot swapping safe:
 * an in-flight handshake keeps the set it started with while sources publish a new one.
 */
import type { X509Certificate } from 'node:crypto';
import type { TrustDomain } from '../spiffe-id/trust-domain.js';
import { X509Bundle, toTrustDomain, type X509BundleSource } from './bundle.js';
import { X509BundleError } from './errors.js';

export class X509BundleSet implements X509BundleSource {
  private readonly byName: ReadonlyMap<string, X509Bundle>;

  constructor(bundles: Iterable<X509Bundle> = []) {
    const map = new Map<string, X509Bundle>();
    for (const bundle of bundles) {
      if (!(bundle instanceof X509Bundle)) throw new X509BundleError('bundle set entries must be X509Bundle objects');
      const name = bundle.trustDomain.name;
      // Two bundles for one domain would make "which one verifies" order-dependent.
      if (map.has(name)) throw new X509BundleError(`more than one bundle for trust domain "${name}"`);
      map.set(name, bundle);
    }
    this.byName = map;
  }

  get size(): number {
    return this.byName.size;
  }

  get(td: TrustDomain | string): X509Bundle | undefined {
    return this.byName.get(toTrustDomain(td).name);
  }

  has(td: TrustDomain | string): boolean {
    return this.byName.has(toTrustDomain(td).name);
  }

  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.get(td);
  }

  trustDomains(): TrustDomain[] {
    return [...this.byName.values()].map((bundle) => bundle.trustDomain);
  }

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

  equals(other: X509BundleSet): boolean {
    if (!(other instanceof X509BundleSet) || other.size !== this.size) return false;
    return this.bundles().every((bundle) => other.get(bundle.trustDomain)?.equals(bundle) === true);
  }

  [Symbol.iterator](): IterableIterator<X509Bundle> {
    return this.byName.values();
  }
}
