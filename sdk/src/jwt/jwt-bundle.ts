/**
 * The JWT-SVID signing keys of one trust domain, by key ID (SPIFFE bundle format, JWT-SVID.md §6).
 *
 * Keys are checked when the bundle is built, not when a token arrives: a malformed bundle is a
 * configuration problem to surface at load time, and a source keeps its previous bundle instead
 * of swapping in one that cannot verify anything. Only public RSA and EC keys are accepted, since
 * those are the only key types the JWT-SVID algorithms use; a symmetric or private key in a trust
 * bundle is rejected outright rather than ignored, because it means secrets are being distributed.
 */
import { createPublicKey, type JsonWebKey as NodeJsonWebKey } from 'node:crypto';
import type { JWK } from 'jose';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import { messageOf } from '../internal/error-text.js';
import { JwtError } from './errors.js';

/** The `use` value of JWT-SVID keys in a SPIFFE bundle. */
export const JWT_SVID_KEY_USE = 'jwt-svid';

/** A public JWT-SVID signing key as kept in a bundle: always has `kid`. */
export type JwtAuthority = Readonly<JWK> & { readonly kid: string };

/** Where validation looks up the JWT signing keys of a trust domain: a JwtBundleSet, a JwtSource, ... */
export interface JwtBundleSource {
  /** The bundle for `td`, or undefined when the domain is unknown (and therefore untrusted). */
  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined;
}

/** A JWKS document: `{ "keys": [...] }`. */
export interface Jwks {
  /** The keys, as JWKs. */
  keys: JWK[];
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
const EC_CURVES = new Set(['P-256', 'P-384', 'P-521']);

export function toTrustDomain(td: TrustDomain | string): TrustDomain {
  return td instanceof TrustDomain ? td : TrustDomain.parse(td);
}

/** Where a key is, for messages: `bundle for "example.org": key 2 (kid "k1")`, composed once. */
function describe(td: TrustDomain, index: number | undefined, kid: unknown): string {
  const position = index === undefined ? 'key' : `key ${index}`;
  return `bundle for "${td.name}": ${typeof kid === 'string' ? `${position} (kid ${JSON.stringify(kid)})` : position}`;
}

function optionalString(jwk: Record<string, unknown>, member: string, where: string): string | undefined {
  const value = jwk[member];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new JwtError('bundle', `${where}: "${member}" must be a string`);
  return value;
}

function requiredString(jwk: Record<string, unknown>, member: string, where: string): string {
  const value = optionalString(jwk, member, where);
  if (value === undefined || value === '') throw new JwtError('bundle', `${where}: "${member}" is required`);
  return value;
}

/**
 * A frozen copy holding only the public members verification needs, so unrelated members (x5c,
 * key_ops, ...) cannot influence how jose imports the key and equality is about the key itself.
 */
function normalizeAuthority(td: TrustDomain, input: unknown, index?: number): JwtAuthority {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new JwtError('bundle', `${describe(td, index, undefined)} is not a JSON object`);
  }
  const jwk = input as Record<string, unknown>;
  const where = describe(td, index, jwk.kid);
  const kid = requiredString(jwk, 'kid', where);
  const use = optionalString(jwk, 'use', where);
  if (use !== undefined && use !== JWT_SVID_KEY_USE) {
    throw new JwtError('bundle', `${where}: "use" is ${JSON.stringify(use)}, expected "${JWT_SVID_KEY_USE}"`);
  }
  const alg = optionalString(jwk, 'alg', where);
  const kty = requiredString(jwk, 'kty', where);
  if (kty === 'oct') throw new JwtError('bundle', `${where}: symmetric ("oct") keys are not allowed in a trust bundle`);
  const leaked = PRIVATE_MEMBERS.filter((member) => jwk[member] !== undefined);
  if (leaked.length > 0) {
    throw new JwtError('bundle', `${where}: is a private key (has ${leaked.map((m) => `"${m}"`).join(', ')}); bundles hold public keys only`);
  }
  let normalized: JWK;
  if (kty === 'EC') {
    const crv = requiredString(jwk, 'crv', where);
    if (!EC_CURVES.has(crv)) throw new JwtError('bundle', `${where}: unsupported EC curve ${JSON.stringify(crv)} (use P-256, P-384 or P-521)`);
    normalized = { kty, crv, x: requiredString(jwk, 'x', where), y: requiredString(jwk, 'y', where) };
  } else if (kty === 'RSA') {
    normalized = { kty, n: requiredString(jwk, 'n', where), e: requiredString(jwk, 'e', where) };
  } else {
    throw new JwtError('bundle', `${where}: unsupported key type ${JSON.stringify(kty)} (JWT-SVIDs are signed with RSA or EC keys)`);
  }
  try {
    // Catches bad base64url, points not on the curve and the like now rather than per token.
    createPublicKey({ key: normalized as NodeJsonWebKey, format: 'jwk' });
  } catch (err) {
    throw new JwtError('bundle', `${where}: not a valid ${kty} public key: ${messageOf(err)}`, { cause: err });
  }
  normalized.kid = kid;
  normalized.use = JWT_SVID_KEY_USE;
  if (alg !== undefined) normalized.alg = alg;
  return Object.freeze(normalized) as JwtAuthority;
}

/** Member order fixed, so two bundles with the same keys compare equal whatever their JSON order. */
function canonical(key: JwtAuthority): string {
  return JSON.stringify([key.kid, key.kty, key.crv, key.x, key.y, key.n, key.e, key.alg]);
}

function buildKeys(td: TrustDomain, entries: Iterable<readonly [number, unknown]>): Map<string, JwtAuthority> {
  const keys = new Map<string, JwtAuthority>();
  for (const [index, jwk] of entries) {
    const key = normalizeAuthority(td, jwk, index);
    // Two keys under one kid would make "which key verifies" depend on order.
    if (keys.has(key.kid)) throw new JwtError('bundle', `bundle for "${td.name}": duplicate kid ${JSON.stringify(key.kid)}`);
    keys.set(key.kid, key);
  }
  return keys;
}

function parseJson(json: string | Uint8Array, td: TrustDomain): unknown {
  const text = typeof json === 'string' ? json : Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new JwtError('bundle', `bundle for "${td.name}" is not valid JSON: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * The JWT-SVID signing keys of one trust domain, by key ID, checked when built: only public RSA and EC
 * keys. Immutable; a bundle without keys trusts nothing from its domain.
 */
export class JwtBundle {
  /** The trust domain these keys sign for. */
  readonly trustDomain: TrustDomain;
  #keys: ReadonlyMap<string, JwtAuthority>;

  /** `authorities`: public JWKs, each with a unique `kid`. Throws a {@link JwtError} (`bundle`) on any bad key. */
  constructor(td: TrustDomain | string, authorities: Iterable<JWK> = []) {
    this.trustDomain = toTrustDomain(td);
    this.#keys = buildKeys(this.trustDomain, [...authorities].entries());
  }

  /**
   * Parses a JWKS document (`{"keys": [...]}`, e.g. `<td>.jwt-bundle.json` or a SPIFFE bundle).
   * Entries whose `use` is something other than `jwt-svid` (such as `x509-svid`) are skipped as the
   * spec requires; entries without `use` are taken as JWT-SVID keys. Other top-level members
   * (`spiffe_sequence`, `spiffe_refresh_hint`) are ignored.
   */
  static parse(td: TrustDomain | string, json: string | Uint8Array | object): JwtBundle {
    const trustDomain = toTrustDomain(td);
    const doc = typeof json === 'string' || json instanceof Uint8Array ? parseJson(json, trustDomain) : json;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new JwtError('bundle', `bundle for "${trustDomain.name}" must be a JSON object with a "keys" array`);
    }
    const keys = (doc as { keys?: unknown }).keys;
    if (!Array.isArray(keys)) throw new JwtError('bundle', `bundle for "${trustDomain.name}" has no "keys" array`);
    // Original positions are kept so an error names the entry as it appears in the file.
    const selected = [...keys.entries()].filter(([, key]) => {
      const use = typeof key === 'object' && key !== null ? (key as { use?: unknown }).use : undefined;
      return use === undefined || use === JWT_SVID_KEY_USE;
    });
    const bundle = new JwtBundle(trustDomain);
    bundle.#keys = buildKeys(trustDomain, selected);
    return bundle;
  }

  /** How many keys the bundle holds. */
  get size(): number {
    return this.#keys.size;
  }

  /** A bundle without keys: the trust domain does not issue JWT-SVIDs, so nothing from it verifies. */
  isEmpty(): boolean {
    return this.#keys.size === 0;
  }

  /** The key with ID `kid`, if any. */
  findKey(kid: string): JwtAuthority | undefined {
    return this.#keys.get(kid);
  }

  /** True when the bundle holds a key with ID `kid`. */
  hasKey(kid: string): boolean {
    return this.#keys.has(kid);
  }

  /** Every key ID. */
  keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /** Every key. */
  keys(): JwtAuthority[] {
    return [...this.#keys.values()];
  }

  /** The bundle as a JWKS document (every key with `use: "jwt-svid"`). */
  toJwks(): Jwks {
    return { keys: this.keys().map((key) => ({ ...key })) };
  }

  /** The JWKS document, so JSON shows the public keys. */
  toJSON(): Jwks {
    return this.toJwks();
  }

  /** Same trust domain and the same keys, in any order. */
  equals(other: JwtBundle): boolean {
    if (!(other instanceof JwtBundle) || !other.trustDomain.equals(this.trustDomain) || other.size !== this.size) return false;
    return this.keys().every((key) => {
      const theirs = other.findKey(key.kid);
      return theirs !== undefined && canonical(theirs) === canonical(key);
    });
  }
}
