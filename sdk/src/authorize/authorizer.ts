/**
 * Authorizers decide, after verification succeeded, whether a verified peer is allowed. They
 * throw rather than return false so the reason ends up in the TLS alert/log without extra glue.
 */
import type { X509Certificate } from 'node:crypto';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';

/**
 * Decides whether a verified peer may proceed: throws (an {@link AuthorizationError}, by convention)
 * when `id`, already verified with its `chain` (leaf first; empty for JWT-SVIDs), is not allowed.
 */
export type Authorizer = (id: SpiffeId, chain: readonly X509Certificate[]) => void;

/**
 * `denied`: an Authorizer refused a verified peer. `config`: an authorizer was built without
 * anything to allow (thrown when it is built, not per connection).
 */
export type AuthorizationErrorKind = 'denied' | 'config';

/** Thrown by an {@link Authorizer} to refuse a peer; the message starts with `authorize: ` and names the peer. */
export class AuthorizationError extends Error {
  /** Whether a peer was refused or the authorizer was misconfigured. */
  readonly kind: AuthorizationErrorKind;

  /** `message` names the peer and the rule; it gets the `authorize: ` prefix here. */
  constructor(kind: AuthorizationErrorKind, message: string) {
    super(`authorize: ${message}`);
    this.name = 'AuthorizationError';
    this.kind = kind;
  }
}

function toId(id: SpiffeId | string): SpiffeId {
  return id instanceof SpiffeId ? id : SpiffeId.parse(id);
}

function toTd(td: TrustDomain | string): TrustDomain {
  return td instanceof TrustDomain ? td : TrustDomain.parse(td);
}

/** Any verified peer. Verification already pinned it to a trusted domain; use with care. */
export function authorizeAny(): Authorizer {
  return () => {};
}

/** Only the peer `expected`. A malformed ID throws a SpiffeIdError here, not on the first connection. */
export function authorizeId(expected: SpiffeId | string): Authorizer {
  // Parsed eagerly so a typo fails at configuration time, not on the first connection.
  const want = toId(expected);
  return (id) => {
    if (!id.equals(want)) throw new AuthorizationError('denied', `peer ${id.toString()} is not ${want.toString()}`);
  };
}

/** Only the listed peers; at least one is required. */
export function authorizeOneOf(...expected: (SpiffeId | string)[]): Authorizer {
  const allowed = expected.map(toId);
  if (allowed.length === 0) throw new AuthorizationError('config', 'authorizeOneOf needs at least one SPIFFE ID');
  const names = new Set(allowed.map((id) => id.toString()));
  return (id) => {
    if (!names.has(id.toString())) {
      throw new AuthorizationError('denied', `peer ${id.toString()} is not one of ${[...names].join(', ')}`);
    }
  };
}

/** Any peer of the listed trust domains; at least one is required. */
export function authorizeMemberOf(...trustDomains: (TrustDomain | string)[]): Authorizer {
  const allowed = trustDomains.map(toTd);
  if (allowed.length === 0) throw new AuthorizationError('config', 'authorizeMemberOf needs at least one trust domain');
  return (id) => {
    if (!allowed.some((td) => id.memberOf(td))) {
      const list = allowed.map((td) => `"${td.name}"`).join(', ');
      throw new AuthorizationError('denied', `peer ${id.toString()} is not a member of trust domain ${list}`);
    }
  };
}

/**
 * Custom policy: the peer is allowed when `predicate` returns `true`; a throwing predicate denies.
 * `description` says what is required, for the error message.
 */
export function authorizeIf(
  predicate: (id: SpiffeId, chain: readonly X509Certificate[]) => boolean,
  description: string,
): Authorizer {
  return (id, chain) => {
    let ok: boolean;
    try {
      ok = predicate(id, chain);
    } catch (err) {
      // A throwing predicate denies; it must never be read as "allowed".
      const reason = err instanceof Error ? err.message : String(err);
      throw new AuthorizationError('denied', `peer ${id.toString()} rejected: ${description} (predicate threw: ${reason})`);
    }
    if (ok !== true) throw new AuthorizationError('denied', `peer ${id.toString()} does not satisfy: ${description}`);
  };
}
