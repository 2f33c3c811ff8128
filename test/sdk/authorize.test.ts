import { describe, expect, it } from 'vitest';
import {
  AuthorizationError,
  SpiffeId,
  TrustDomain,
  authorizeAny,
  authorizeId,
  authorizeIf,
  authorizeMemberOf,
  authorizeOneOf,
  type Authorizer,
} from '@spire-csi/sdk';

const id = (s: string) => SpiffeId.parse(s);
const allows = (authorizer: Authorizer, peer: string) => () => authorizer(id(peer), []);

describe('authorizers allow', () => {
  it.each<[string, Authorizer, string]>([
    ['any', authorizeAny(), 'spiffe://x/y'],
    ['exact id (string)', authorizeId('spiffe://a/b'), 'spiffe://a/b'],
    ['exact id (SpiffeId)', authorizeId(id('spiffe://a/b')), 'spiffe://a/b'],
    ['one of', authorizeOneOf('spiffe://a/b', id('spiffe://a/c')), 'spiffe://a/c'],
    ['member of (string)', authorizeMemberOf('a'), 'spiffe://a/anything'],
    ['member of one of several', authorizeMemberOf(TrustDomain.parse('a'), 'spiffe://b'), 'spiffe://b/x'],
    ['predicate true', authorizeIf((peer) => peer.path.startsWith('/ns/prod/'), 'a prod workload'), 'spiffe://a/ns/prod/web'],
  ])('%s', (_name, authorizer, peer) => {
    expect(allows(authorizer, peer)).not.toThrow();
  });
});

describe('authorizers deny', () => {
  it.each<[string, Authorizer, string, string | RegExp]>([
    ['exact-id-other-path', authorizeId('spiffe://a/c'), 'spiffe://a/b', 'authorize: peer spiffe://a/b is not spiffe://a/c'],
    ['exact-id-path-case', authorizeId('spiffe://a/b'), 'spiffe://a/B', /is not spiffe:\/\/a\/b/],
    ['exact-id-prefix', authorizeId('spiffe://a/b'), 'spiffe://a/b/c', /is not/],
    ['one-of-none-match', authorizeOneOf('spiffe://a/b', 'spiffe://a/c'), 'spiffe://a/d', 'authorize: peer spiffe://a/d is not one of spiffe://a/b, spiffe://a/c'],
    ['member-of-other-td', authorizeMemberOf('a'), 'spiffe://b/x', 'authorize: peer spiffe://b/x is not a member of trust domain "a"'],
    ['member-of-suffix-td', authorizeMemberOf('a.org'), 'spiffe://evil-a.org/x', /not a member/],
    ['predicate-false', authorizeIf(() => false, 'never'), 'spiffe://a/b', 'authorize: peer spiffe://a/b does not satisfy: never'],
    ['predicate-throws', authorizeIf(() => { throw new Error('boom'); }, 'explodes'), 'spiffe://a/b', /rejected: explodes \(predicate threw: boom\)/],
  ])('%s', (_name, authorizer, peer, message) => {
    expect(allows(authorizer, peer)).toThrow(AuthorizationError);
    expect(allows(authorizer, peer)).toThrow(message);
  });

  it('passes the chain to predicates', () => {
    let seen = -1;
    authorizeIf((_id, chain) => ((seen = chain.length), true), 'x')(id('spiffe://a/b'), []);
    expect(seen).toBe(0);
  });
});

describe('authorizer configuration errors surface early', () => {
  it.each<[string, () => unknown, RegExp]>([
    ['invalid-id', () => authorizeId('spiffe://A/b'), /spiffeid: trust domain must be lowercase/],
    ['invalid-one-of', () => authorizeOneOf('spiffe://a/b', 'nope'), /spiffeid: scheme/],
    ['empty-one-of', () => authorizeOneOf(), /at least one SPIFFE ID/],
    ['invalid-td', () => authorizeMemberOf('A'), /spiffeid: trust domain must be lowercase/],
    ['empty-member-of', () => authorizeMemberOf(), /at least one trust domain/],
  ])('%s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});
