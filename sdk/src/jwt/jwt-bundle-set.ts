/**
 * An immutable map of trust domain → JwtBundle. Immutable so a validation in progress keeps the
 * keys it started with while a source publishes a new set.
 */
import type { TrustDomain } from '../spiffe-id/trust-domain.js';
import { JwtBundleError } from './errors.js';
import { JwtBundle, toTrustDomain, type JwtBundleSource } from './jwt-bundle.js';

export class JwtBundleSet implements JwtBundleSource {
  readonly #byName: ReadonlyMap<string, JwtBundle>;

  constructor(bundles: Iterable<JwtBundle> = []) {
    const map = new Map<string, JwtBundle>();
    for (const bundle of bundles) {
      if (!(bundle instanceof JwtBundle)) throw new JwtBundleError('bundle set entries must be JwtBundle objects');
      const name = bundle.trustDomain.name;
      if (map.has(name)) throw new JwtBundleError(`more than one bundle for trust domain "${name}"`);
      map.set(name, bundle);
    }
    this.#byName = map;
  }

  get size(): number {
    return this.#byName.size;
  }

  get(td: TrustDomain | string): JwtBundle | undefined {
    return this.#byName.get(toTrustDomain(td).name);
  }

  has(td: TrustDomain | string): boolean {
    return this.#byName.has(toTrustDomain(td).name);
  }

  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined {
    return this.get(td);
  }

  trustDomains(): TrustDomain[] {
    return this.bundles().map((bundle) => bundle.trustDomain);
  }

  bundles(): JwtBundle[] {
    return [...this.#byName.values()];
  }

  /** A new set with `bundle` added, or replacing the one for its trust domain. */
  with(bundle: JwtBundle): JwtBundleSet {
    return new JwtBundleSet([...this.bundles().filter((b) => !b.trustDomain.equals(bundle.trustDomain)), bundle]);
  }

  without(td: TrustDomain | string): JwtBundleSet {
    const name = toTrustDomain(td).name;
    return new JwtBundleSet(this.bundles().filter((b) => b.trustDomain.name !== name));
  }

  equals(other: JwtBundleSet): boolean {
    if (!(other instanceof JwtBundleSet) || other.size !== this.size) return false;
    return this.bundles().every((bundle) => other.get(bundle.trustDomain)?.equals(bundle) === true);
  }

  [Symbol.iterator](): IterableIterator<JwtBundle> {
    return this.#byName.values();
  }
}
