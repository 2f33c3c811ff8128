import { describe, expect, it } from 'vitest';
import { SpiffeId, SpiffeIdError, TrustDomain } from '@spire-csi/sdk/spiffeid';

const td255 = 'a'.repeat(255);
const longPath = (total: number): string => `spiffe://td/${'a'.repeat(total - 'spiffe://td/'.length)}`;

describe('SpiffeId.parse accepts', () => {
  it.each([
    ['root id', 'spiffe://example.org', 'example.org', ''],
    ['simple path', 'spiffe://example.org/ns/default/sa/web', 'example.org', '/ns/default/sa/web'],
    ['all allowed path chars', 'spiffe://td/aZ09.-_', 'td', '/aZ09.-_'],
    ['all allowed td chars', 'spiffe://a-b_c.9/x', 'a-b_c.9', '/x'],
    ['dots inside segments', 'spiffe://td/.a/a./...', 'td', '/.a/a./...'],
    ['ipv4-looking td', 'spiffe://10.0.0.1/x', '10.0.0.1', '/x'],
    ['td of 255 bytes', `spiffe://${td255}`, td255, ''],
    ['2048 bytes', longPath(2048), 'td', longPath(2048).slice('spiffe://td'.length)],
  ])('%s', (_name, input, td, path) => {
    const id = SpiffeId.parse(input);
    expect(id.trustDomain.name).toBe(td);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(input);
  });
});

describe('SpiffeId.parse rejects', () => {
  it.each([
    ['empty', '', /cannot be empty/],
    ['missing-scheme', 'example.org/x', /scheme is missing or invalid/],
    ['other-scheme', 'https://example.org/x', /scheme is missing or invalid/],
    ['uppercase-scheme', 'SPIFFE://example.org/x', /scheme must be lowercase/],
    ['single-slash-scheme', 'spiffe:/example.org/x', /scheme is missing or invalid/],
    ['empty-td', 'spiffe:///x', /trust domain is missing/],
    ['only-scheme', 'spiffe://', /trust domain is missing/],
    ['uppercase-td', 'spiffe://Example.org/x', /trust domain must be lowercase/],
    ['userinfo', 'spiffe://user@example.org/x', /userinfo/],
    ['port', 'spiffe://example.org:8080/x', /port/],
    ['percent-td', 'spiffe://exa%41mple.org/x', /trust domain cannot contain percent-encoded/],
    ['bad-td-char', 'spiffe://exa!mple.org/x', /trust domain characters are limited/],
    ['ipv6-td', 'spiffe://[::1]/x', /trust domain characters are limited/],
    ['query', 'spiffe://example.org/x?a=b', /cannot contain a query/],
    ['query-after-td', 'spiffe://example.org?a=b', /cannot contain a query/],
    ['fragment', 'spiffe://example.org/x#frag', /cannot contain a fragment/],
    ['fragment-after-td', 'spiffe://example.org#frag', /cannot contain a fragment/],
    ['trailing-slash', 'spiffe://example.org/x/', /path cannot have a trailing slash/],
    ['root-trailing-slash', 'spiffe://example.org/', /path cannot have a trailing slash/],
    ['empty-segment', 'spiffe://example.org/a//b', /empty segments/],
    ['dot-segment', 'spiffe://example.org/a/./b', /dot segments/],
    ['dotdot-segment', 'spiffe://example.org/a/../b', /dot segments/],
    ['final-dotdot', 'spiffe://example.org/..', /dot segments/],
    ['percent-path', 'spiffe://example.org/a%2Fb', /path cannot contain percent-encoded/],
    ['space-in-path', 'spiffe://example.org/a b', /path segment characters are limited/],
    ['non-ascii-path', 'spiffe://example.org/caf\u00e9', /path segment characters are limited/],
    ['td-too-long', `spiffe://${'a'.repeat(256)}/x`, /longer than 255 bytes/],
    ['id-too-long', longPath(2049), /longer than 2048 bytes/],
  ])('%s', (_name, input, message) => {
    expect(() => SpiffeId.parse(input)).toThrow(SpiffeIdError);
    expect(() => SpiffeId.parse(input)).toThrow(message);
    expect(() => SpiffeId.parse(input)).toThrow(/^spiffeid: /);
  });
});

describe('SpiffeId value semantics', () => {
  it('equals compares exactly, path case-sensitive', () => {
    expect(SpiffeId.parse('spiffe://td/a').equals(SpiffeId.parse('spiffe://td/a'))).toBe(true);
    expect(SpiffeId.parse('spiffe://td/a').equals(SpiffeId.parse('spiffe://td/A'))).toBe(false);
    expect(SpiffeId.parse('spiffe://td/a').equals(SpiffeId.parse('spiffe://td2/a'))).toBe(false);
  });
  it('memberOf checks the trust domain only', () => {
    const id = SpiffeId.parse('spiffe://td/a');
    expect(id.memberOf(TrustDomain.parse('td'))).toBe(true);
    expect(id.memberOf(TrustDomain.parse('td2'))).toBe(false);
    // A prefix is not membership.
    expect(SpiffeId.parse('spiffe://td.evil/a').memberOf(TrustDomain.parse('td'))).toBe(false);
  });
  it('fromPath builds and validates', () => {
    const td = TrustDomain.parse('td');
    expect(SpiffeId.fromPath(td, '/a/b').toString()).toBe('spiffe://td/a/b');
    expect(SpiffeId.fromPath(td, '').isTrustDomainId).toBe(true);
    expect(() => SpiffeId.fromPath(td, 'a')).toThrow(/path must start with "\/"/);
    expect(() => SpiffeId.fromPath(td, '/a/')).toThrow(/trailing slash/);
    expect(() => SpiffeId.fromPath(td, `/${'a'.repeat(2048)}`)).toThrow(/longer than 2048 bytes/);
  });
  it('serializes to its string', () => {
    expect(JSON.stringify({ id: SpiffeId.parse('spiffe://td/a') })).toBe('{"id":"spiffe://td/a"}');
  });
});

describe('TrustDomain.parse', () => {
  it.each([
    ['bare name', 'example.org', 'example.org'],
    ['id form', 'spiffe://example.org', 'example.org'],
    ['255 bytes', td255, td255],
  ])('accepts %s', (_name, input, name) => {
    const td = TrustDomain.parse(input);
    expect(td.name).toBe(name);
    expect(td.toString()).toBe(name);
    expect(td.idString()).toBe(`spiffe://${name}`);
  });
  it.each([
    ['empty', '', /trust domain is missing/],
    ['uppercase', 'Example.org', /must be lowercase/],
    ['id-with-path', 'spiffe://example.org/x', /trust domain ID cannot have a path/],
    ['id-with-trailing-slash', 'spiffe://example.org/', /cannot have a path/],
    ['uppercase-scheme', 'SPIFFE://example.org', /scheme must be lowercase/],
    ['other-scheme', 'https://example.org', /scheme is missing or invalid/],
    ['port', 'example.org:443', /port/],
    ['userinfo', 'me@example.org', /userinfo/],
    ['percent', 'a%20b', /percent-encoded/],
    ['slash', 'a/b', /trust domain characters are limited/],
    ['too-long', 'a'.repeat(256), /longer than 255 bytes/],
  ])('rejects %s', (_name, input, message) => {
    expect(() => TrustDomain.parse(input)).toThrow(SpiffeIdError);
    expect(() => TrustDomain.parse(input)).toThrow(message);
  });
  it('equals by name', () => {
    expect(TrustDomain.parse('td').equals(TrustDomain.parse('spiffe://td'))).toBe(true);
    expect(TrustDomain.parse('td').equals(TrustDomain.parse('td2'))).toBe(false);
  });
});
