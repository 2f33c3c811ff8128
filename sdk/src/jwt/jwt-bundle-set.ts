/**
 * An immutable map of trust domain → JwtBundle. Immutable so a validation in progress keeps the
 * keys it started with while a source publishes a new set.
 */
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { JwtError } from './errors.js';
import { JwtBundle, toTrustDomain, type JwtBundleSource } from './jwt-bundle.js';

/** One {@link JwtBundle} per trust domain, immutable, like X509BundleSet. */
export class JwtBundleSet implements JwtBundleSource {
  readonly #byName: ReadonlyMap<string, JwtBundle>;

  /** Throws a {@link JwtError} (`bundle`) for two bundles of one trust domain. */
  constructor(bundles: Iterable<JwtBundle> = []) {
    const map = new Map<string, JwtBundle>();
    for (const bundle of bundles) {
      if (!(bundle instanceof JwtBundle)) throw new JwtError('bundle', 'bundle set entries must be JwtBundle objects');
      const name = bundle.trustDomain.name;
      if (map.has(name)) throw new JwtError('bundle', `more than one bundle for trust domain "${name}"`);
      map.set(name, bundle);
    }
    this.#byName = map;
  }

  /** How many trust domains the set has a bundle for. */
  get size(): number {
    return this.#byName.size;
  }

  /** The bundle of `td`, if any. */
  get(td: TrustDomain | string): JwtBundle | undefined {
    return this.#byName.get(toTrustDomain(td).name);
  }

  /** True when the set has a bundle for `td`. */
  has(td: TrustDomain | string): boolean {
    return this.#byName.has(toTrustDomain(td).name);
  }

  /** {@inheritDoc JwtBundleSource.getJwtBundleForTrustDomain} */
  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined {
    return this.get(td);
  }

  /** The trust domains of the set. */
  trustDomains(): TrustDomain[] {
    return this.bundles().map((bundle) => bundle.trustDomain);
  }

  /** The bundles of the set. */
  bundles(): JwtBundle[] {
    return [...this.#byName.values()];
  }

  /** A new set with `bundle` added, or replacing the one for its trust domain. */
  with(bundle: JwtBundle): JwtBundleSet {
    return new JwtBundleSet([...this.bundles().filter((b) => !b.trustDomain.equals(bundle.trustDomain)), bundle]);
  }

  /** A new set without `td`. */
  without(td: TrustDomain | string): JwtBundleSet {
    const name = toTrustDomain(td).name;
    return new JwtBundleSet(this.bundles().filter((b) => b.trustDomain.name !== name));
  }

  /** Same trust domains with equal bundles. */
  equals(other: JwtBundleSet): boolean {
    if (!(other instanceof JwtBundleSet) || other.size !== this.size) return false;
    return this.bundles().every((bundle) => other.get(bundle.trustDomain)?.equals(bundle) === true);
  }

  /** The bundles, one per trust domain. */
  [Symbol.iterator](): IterableIterator<JwtBundle> {
    return this.#byName.values();
  }
}
