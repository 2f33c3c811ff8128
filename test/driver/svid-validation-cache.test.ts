import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentX509Svid, BundleUpdate } from '../../driver/src/identity/identity-backend.js';
import { AgentSvidError } from '../../driver/src/session/agent-svid.js';
import { SvidValidationCache, svidFingerprint } from '../../driver/src/session/svid-validation-cache.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';

const ID = 'spiffe://example.org/web';
const NOT_BEFORE = new Date('2030-01-01T00:00:00Z');
const NOT_AFTER = new Date('2030-01-02T00:00:00Z');
const DURING = new Date('2030-01-01T12:00:00Z');

function agentSvid(minted: MintedSvid, spiffeId = ID): AgentX509Svid {
  return { spiffeId, chainDer: minted.chainDer, keyDer: minted.keyDer, hint: '' };
}

/** A copy with fresh buffers: what a second volume's stream decodes from the same agent message. */
function copyOf(svid: AgentX509Svid): AgentX509Svid {
  return { ...svid, chainDer: svid.chainDer.map((der) => Buffer.from(der)), keyDer: Buffer.from(svid.keyDer) };
}

describe('SvidValidationCache', () => {
  let ca: TestCa;
  let other: TestCa;
  let web: MintedSvid;
  let second: MintedSvid;
  let bundles: BundleUpdate;

  beforeAll(async () => {
    const validity = { notBefore: new Date('2029-01-01T00:00:00Z'), notAfter: new Date('2031-01-01T00:00:00Z') };
    ca = await TestCa.create('example.org', validity);
    other = await TestCa.create('example.org', validity);
    web = await ca.mint(ID, { notBefore: NOT_BEFORE, notAfter: NOT_AFTER });
    second = await ca.mint(ID, { notBefore: NOT_BEFORE, notAfter: NOT_AFTER });
    bundles = new Map([['example.org', ca.rootDer]]);
  });

  it('validates once per distinct input and hands every caller the same parsed SVID', () => {
    const cache = new SvidValidationCache();
    const first = cache.validate(agentSvid(web), bundles, { now: DURING });
    const again = cache.validate(copyOf(agentSvid(web)), new Map(bundles), { now: DURING });
    expect(again.svid).toBe(first.svid);
    expect(again.fingerprint).toBe(first.fingerprint);
    expect(cache.stats).toEqual({ hits: 1, misses: 1 });
    const rotated = cache.validate(agentSvid(second), bundles, { now: DURING });
    expect(rotated.svid).not.toBe(first.svid);
    expect(rotated.fingerprint).not.toBe(first.fingerprint);
    expect(cache.stats).toEqual({ hits: 1, misses: 2 });
  });

  it('keys on every input validation reads: claimed ID, key, own and federated bundles', () => {
    const base = svidFingerprint(agentSvid(web), bundles, 'example.org', []);
    expect(svidFingerprint(agentSvid(web, 'spiffe://example.org/x'), bundles, 'example.org', [])).not.toBe(base);
    expect(svidFingerprint({ ...agentSvid(web), keyDer: second.keyDer }, bundles, 'example.org', [])).not.toBe(base);
    expect(svidFingerprint(agentSvid(web), new Map([['example.org', other.rootDer]]), 'example.org', [])).not.toBe(base);
    expect(svidFingerprint(agentSvid(web), bundles, 'example.org', ['partner.test'])).not.toBe(base);
    const withPartner = new Map([...bundles, ['partner.test', other.rootDer]]);
    expect(svidFingerprint(agentSvid(web), withPartner, 'example.org', ['partner.test'])).not.toBe(
      svidFingerprint(agentSvid(web), bundles, 'example.org', ['partner.test']),
    );
  });

  it('never serves a cached success for a bundle that does not anchor the SVID', () => {
    const cache = new SvidValidationCache();
    cache.validate(agentSvid(web), bundles, { now: DURING });
    expect(() => cache.validate(agentSvid(web), new Map([['example.org', other.rootDer]]), { now: DURING })).toThrow(/does not chain/);
  });

  it('re-checks the clock on a hit: an SVID that expired since is rejected with the validator error', () => {
    const cache = new SvidValidationCache();
    cache.validate(agentSvid(web), bundles, { now: DURING });
    let caught: unknown;
    try {
      cache.validate(agentSvid(web), bundles, { now: new Date(NOT_AFTER.getTime() + 1000) });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AgentSvidError);
    expect((caught as AgentSvidError).problem).toBe('invalid');
    expect((caught as Error).message).toMatch(/expired/);
    // Exactly at notAfter counts as expired, as in validateAgentSvid.
    expect(() => cache.validate(agentSvid(web), bundles, { now: NOT_AFTER })).toThrow(/expired/);
    // Not yet valid: the leaf's period is checked on a hit too.
    expect(() => cache.validate(agentSvid(web), bundles, { now: new Date(NOT_BEFORE.getTime() - 1000) })).toThrow(AgentSvidError);
    expect(cache.stats.hits).toBe(0);
  });

  it('does not cache failures and reports them exactly as validateAgentSvid does', () => {
    const cache = new SvidValidationCache();
    expect(() => cache.validate({ ...agentSvid(web), keyDer: second.keyDer }, bundles, { now: DURING })).toThrow(/unusable X.509-SVID/);
    expect(() => cache.validate(agentSvid(web, 'https://bad'), bundles, { now: DURING })).toThrow(/malformed SPIFFE ID/);
    expect(() => cache.validate(agentSvid(web), new Map(), { now: DURING })).toThrow(/no trust bundle for example.org yet/);
    expect(cache.size).toBe(0);
  });

  it('is bounded and evicts the least recently used entry', () => {
    const cache = new SvidValidationCache({ maxEntries: 2 });
    const a = agentSvid(web);
    const b = agentSvid(second);
    const c = agentSvid(web, ID);
    const cBundles = new Map([...bundles, ['partner.test', other.rootDer]]);
    cache.validate(a, bundles, { now: DURING });
    cache.validate(b, bundles, { now: DURING });
    cache.validate(a, bundles, { now: DURING }); // a is now the most recent
    cache.validate(c, cBundles, { now: DURING, federatesWith: ['partner.test'] }); // evicts b
    expect(cache.size).toBe(2);
    const before = cache.stats.misses;
    cache.validate(a, bundles, { now: DURING });
    expect(cache.stats.misses).toBe(before);
    cache.validate(b, bundles, { now: DURING });
    expect(cache.stats.misses).toBe(before + 1);
  });

  it('rejects a nonsensical bound', () => {
    expect(() => new SvidValidationCache({ maxEntries: 0 })).toThrow(RangeError);
  });
});
