import { describe, expect, it } from 'vitest';
import { entryKey, entryMatches, matchEntries } from '../../dev/src/dev-agent/matcher.js';
import { parseRegistrations, RegistrationError, validateRegistrations } from '../../dev/src/dev-agent/registrations.js';
import { parseSelector } from '../../driver/src/identity/delegated/selectors.js';

const TD = 'example.org';

const valid = {
  entries: [
    {
      spiffeId: 'spiffe://example.org/ns/default/sa/web',
      selectors: ['k8s:ns:default', 'k8s:sa:web'],
      federatesWith: ['spiffe://other.org'],
      hint: 'web',
    },
    { spiffeId: 'spiffe://example.org/ns/default', selectors: ['k8s:ns:default'] },
  ],
  federatedTrustDomains: ['other.org'],
};

describe('parseRegistrations', () => {
  it('parses the documented format and normalizes trust domains', () => {
    const regs = parseRegistrations(JSON.stringify(valid), TD);
    expect(regs.federatedTrustDomains).toEqual(['other.org']);
    expect(regs.entries).toEqual([
      {
        spiffeId: 'spiffe://example.org/ns/default/sa/web',
        selectors: [
          { type: 'k8s', value: 'ns:default' },
          { type: 'k8s', value: 'sa:web' },
        ],
        federatesWith: ['other.org'],
        hint: 'web',
      },
      {
        spiffeId: 'spiffe://example.org/ns/default',
        selectors: [{ type: 'k8s', value: 'ns:default' }],
        federatesWith: [],
        hint: '',
      },
    ]);
  });

  it('accepts an empty entry list and an agent trust domain given as an ID', () => {
    expect(parseRegistrations('{"entries": []}', 'spiffe://example.org')).toEqual({ entries: [], federatedTrustDomains: [] });
  });

  const entry = (patch: Record<string, unknown>) => ({
    entries: [{ spiffeId: 'spiffe://example.org/a', selectors: ['k8s:ns:a'], ...patch }],
    federatedTrustDomains: ['other.org'],
  });

  it.each([
    ['not-json', '{', /not valid JSON/],
    ['not-an-object', '[]', /the file must be a JSON object/],
    ['missing-entries', '{}', /"entries" must be an array/],
    ['unknown-top-level-field', '{"entries": [], "entrys": []}', /unknown field "entrys"/],
    ['entry-not-object', '{"entries": [1]}', /entries\[0\] must be a JSON object/],
    ['unknown-entry-field', entry({ selector: [] }), /entries\[0\]: unknown field "selector"/],
    ['spiffe-id-missing', entry({ spiffeId: undefined }), /entries\[0\]\.spiffeId must be a string/],
    ['spiffe-id-invalid', entry({ spiffeId: 'spiffe://Example.org/a' }), /entries\[0\]\.spiffeId: /],
    ['spiffe-id-foreign', entry({ spiffeId: 'spiffe://other.org/a' }), /not in the agent's trust domain "example.org"/],
    ['spiffe-id-no-path', entry({ spiffeId: 'spiffe://example.org' }), /must have a path/],
    ['selectors-empty', entry({ selectors: [] }), /entries\[0\]\.selectors must be a non-empty array/],
    ['selector-not-string', entry({ selectors: [3] }), /entries\[0\]\.selectors\[0\] must be a string/],
    ['selector-malformed', entry({ selectors: ['k8s:ns:a', 'k8sns'] }), /entries\[0\]\.selectors\[1\]: selectors: "k8sns"/],
    ['selector-duplicate', entry({ selectors: ['k8s:ns:a', 'k8s:ns:a'] }), /selectors\[1\]: "k8s:ns:a" is listed twice/],
    ['federates-unknown', entry({ federatesWith: ['third.org'] }), /federatesWith\[0\]: "third.org" is not in federatedTrustDomains/],
    ['federates-own', entry({ federatesWith: ['example.org'] }), /federatesWith\[0\]: "example.org" is the agent's own/],
    ['federates-invalid', entry({ federatesWith: ['spiffe://other.org/path'] }), /federatesWith\[0\]: /],
    ['hint-not-string', entry({ hint: 1 }), /entries\[0\]\.hint must be a string/],
    ['federated-not-array', { entries: [], federatedTrustDomains: 'other.org' }, /federatedTrustDomains must be an array/],
    ['federated-duplicate', { entries: [], federatedTrustDomains: ['a.org', 'spiffe://a.org'] }, /federatedTrustDomains\[1\]: .* listed twice/],
  ])('rejects %s', (_name, input, message) => {
    const text = typeof input === 'string' ? input : JSON.stringify(input);
    expect(() => parseRegistrations(text, TD)).toThrow(RegistrationError);
    expect(() => parseRegistrations(text, TD)).toThrow(message);
    expect(() => parseRegistrations(text, TD)).toThrow(/^registrations: /);
  });

  it('names the failing entry by index', () => {
    const input = { entries: [valid.entries[1], { spiffeId: 'spiffe://example.org/b', selectors: ['bad'] }] };
    expect(() => validateRegistrations(input, TD)).toThrow(/entries\[1\]\.selectors\[0\]/);
  });
});

describe('matcher', () => {
  const regs = validateRegistrations(
    {
      entries: [
        { spiffeId: 'spiffe://example.org/ns/default', selectors: ['k8s:ns:default'] },
        { spiffeId: 'spiffe://example.org/web', selectors: ['k8s:ns:default', 'k8s:sa:web'] },
        { spiffeId: 'spiffe://example.org/pod', selectors: ['k8s:ns:default', 'k8s:pod-uid:1234'] },
        { spiffeId: 'spiffe://example.org/other', selectors: ['k8s:ns:other'] },
      ],
    },
    TD,
  );
  const selectors = (...texts: string[]) => texts.map(parseSelector);

  it('matches entries whose selectors are a subset of the request', () => {
    const matched = matchEntries(regs.entries, selectors('k8s:ns:default', 'k8s:sa:web', 'k8s:pod-uid:9', 'k8s:node-name:n'));
    expect(matched.map((e) => e.spiffeId)).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/web']);
  });

  it('does not match when an entry selector is missing from the request', () => {
    expect(matchEntries(regs.entries, selectors('k8s:sa:web'))).toEqual([]);
    expect(entryMatches(regs.entries[1]!, selectors('k8s:ns:default'))).toBe(false);
    expect(entryMatches(regs.entries[2]!, selectors('k8s:pod-uid:1234', 'k8s:ns:default'))).toBe(true);
  });

  it('compares type and value, not their joined text only', () => {
    expect(matchEntries(regs.entries, [{ type: 'k8s:ns', value: 'default' }])).toHaveLength(0);
  });

  it('keys entries by ID and selector set, ignoring selector order', () => {
    const a = validateRegistrations({ entries: [{ spiffeId: 'spiffe://example.org/x', selectors: ['k8s:a:1', 'k8s:b:2'] }] }, TD);
    const b = validateRegistrations({ entries: [{ spiffeId: 'spiffe://example.org/x', selectors: ['k8s:b:2', 'k8s:a:1'] }] }, TD);
    expect(entryKey(a.entries[0]!)).toBe(entryKey(b.entries[0]!));
    expect(entryKey(a.entries[0]!)).not.toBe(entryKey(regs.entries[0]!));
  });
});
