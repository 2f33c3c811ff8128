import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationError, authorizeId } from '@spire-csi/sdk/authorize';
import { X509Bundle, X509BundleSet, X509Error, type X509BundleSource } from '@spire-csi/sdk/x509';
import { sdkError } from '../helpers/sdk-errors.js';
import { X509SvidVerificationCache } from '../../sdk/src/x509/verify-cache.js';
import { verifyPeer, peerVerificationCache } from '../../sdk/src/tls/verify-peer.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';

const A = 'a.org';
const ID = 'spiffe://a.org/workload';
const HOUR = 3_600_000;

let ca: TestCa;
let other: TestCa;
let bundles: X509BundleSet;
let leaf: MintedSvid;
let viaIntermediate: MintedSvid;

const certs = (ders: readonly Buffer[]) => ders.map((der) => new X509Certificate(der));

beforeAll(async () => {
  [ca, other] = await Promise.all([TestCa.create(A), TestCa.create(A)]);
  bundles = new X509BundleSet([new X509Bundle(A, [ca.rootCert])]);
  leaf = await ca.mint(ID, { notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + HOUR) });
  viaIntermediate = await (await ca.intermediate()).mint(ID);
});

describe('X509SvidVerificationCache', () => {
  it('hit: the same chain against the same bundle set is verified once', () => {
    const cache = new X509SvidVerificationCache();
    const first = cache.verify(certs(leaf.chainDer), bundles);
    // New objects for the same certificates, as every handshake produces.
    const second = cache.verify(certs(leaf.chainDer), bundles);
    expect(cache.stats).toEqual({ hits: 1, misses: 1 });
    expect(second.id.toString()).toBe(ID);
    expect(second.chain.map((c) => c.fingerprint256)).toEqual(first.chain.map((c) => c.fingerprint256));
    // Each caller gets its own array: mutating one result cannot change what the cache returns.
    second.chain.length = 0;
    expect(cache.verify(certs(leaf.chainDer), bundles).chain).toHaveLength(2);
  });

  it('miss: another chain, or the same chain as DER, is verified in full', () => {
    const cache = new X509SvidVerificationCache();
    cache.verify(certs(leaf.chainDer), bundles);
    cache.verify(certs(viaIntermediate.chainDer), bundles);
    cache.verify(viaIntermediate.chainDer, bundles);
    expect(cache.stats).toEqual({ hits: 0, misses: 3 });
    cache.verify(viaIntermediate.chainDer, bundles);
    expect(cache.stats).toEqual({ hits: 1, misses: 3 });
  });

  it('a chain through an intermediate is keyed by every presented certificate, not by the leaf', () => {
    const cache = new X509SvidVerificationCache();
    const [leafDer, intermediateDer] = viaIntermediate.chainDer as [Buffer, Buffer];
    cache.verify(certs([leafDer, intermediateDer]), bundles);
    expect(cache.verifiedLeaf(new X509Certificate(leafDer).fingerprint256, bundles)).toBeUndefined();
    // Without its intermediate the leaf does not verify, whatever was remembered for the full chain.
    expect(() => cache.verify(certs([leafDer]), bundles)).toThrow(sdkError(X509Error, 'verification'));
  });

  it('a leaf directly under an authority is also found by its fingerprint, whatever else is presented', () => {
    const cache = new X509SvidVerificationCache();
    const presented = certs(leaf.chainDer);
    cache.verify(presented, bundles);
    const known = cache.verifiedLeaf(presented[0]!.fingerprint256, bundles);
    expect(known?.id.toString()).toBe(ID);
    // Extra certificates do not matter for such a leaf: the bundle's authorities are tried first.
    cache.verify([...certs(leaf.chainDer), other.rootCert], bundles);
    expect(cache.stats).toEqual({ hits: 2, misses: 1 });
  });

  it('invalidation: a new bundle set object (a trust change) starts empty, even with equal content', () => {
    const cache = new X509SvidVerificationCache();
    cache.verify(certs(leaf.chainDer), bundles);
    const replaced = new X509BundleSet([new X509Bundle(A, [ca.rootCert])]);
    expect(cache.sizeFor(replaced)).toBe(0);
    cache.verify(certs(leaf.chainDer), replaced);
    expect(cache.stats).toEqual({ hits: 0, misses: 2 });

    // A rotated CA: the remembered result for the old set must not vouch under the new one.
    const rotated = new X509BundleSet([new X509Bundle(A, [other.rootCert])]);
    expect(() => cache.verify(certs(leaf.chainDer), rotated)).toThrow(sdkError(X509Error, 'verification'));
    expect(cache.verifiedLeaf(new X509Certificate(leaf.certDer).fingerprint256, rotated)).toBeUndefined();
  });

  it('re-checks validity on every hit: past notAfter the entry is dropped and the error is exact', () => {
    const cache = new X509SvidVerificationCache();
    cache.verify(certs(leaf.chainDer), bundles);
    const afterExpiry = new Date(Date.now() + 2 * HOUR);
    expect(() => cache.verify(certs(leaf.chainDer), bundles, { now: afterExpiry })).toThrow(/expired at/);
    expect(cache.verifiedLeaf(new X509Certificate(leaf.certDer).fingerprint256, bundles, { now: afterExpiry })).toBeUndefined();
    const beforeValidity = new Date(Date.now() - 2 * HOUR);
    expect(() => cache.verify(certs(leaf.chainDer), bundles, { now: beforeValidity })).toThrow(/not valid before/);
    expect(cache.stats.hits).toBe(0);
    // Back inside the window, it verifies again (and is remembered again).
    cache.verify(certs(leaf.chainDer), bundles);
    cache.verify(certs(leaf.chainDer), bundles);
    expect(cache.stats.hits).toBe(1);
  });

  it('drops chains past their validity when it remembers a new one, so rotated-away peers do not pile up', async () => {
    const cache = new X509SvidVerificationCache();
    const shortLived = await ca.mint('spiffe://a.org/rotated', { notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + 60_000) });
    cache.verify(certs(shortLived.chainDer), bundles);
    cache.verify(certs(leaf.chainDer), bundles);
    // chain key + leaf key for each
    expect(cache.sizeFor(bundles)).toBe(4);
    const later = new Date(Date.now() + 10 * 60_000);
    const fresh = await ca.mint('spiffe://a.org/new', { notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + HOUR) });
    cache.verify(certs(fresh.chainDer), bundles, { now: later });
    // The short-lived chain (expired at `later`) is gone; the valid one and the new one remain.
    expect(cache.sizeFor(bundles)).toBe(4);
    cache.verify(certs(leaf.chainDer), bundles, { now: later });
    expect(cache.stats.hits).toBe(1);
  });

  it('failures are never cached', () => {
    const cache = new X509SvidVerificationCache();
    const untrusted = new X509BundleSet([new X509Bundle(A, [other.rootCert])]);
    expect(() => cache.verify(certs(leaf.chainDer), untrusted)).toThrow(sdkError(X509Error, 'verification'));
    expect(() => cache.verify(certs(leaf.chainDer), untrusted)).toThrow(sdkError(X509Error, 'verification'));
    expect(cache.sizeFor(untrusted)).toBe(0);
    expect(cache.stats).toEqual({ hits: 0, misses: 2 });
  });

  it('is bounded: the least recently used chains are evicted', async () => {
    const cache = new X509SvidVerificationCache({ maxEntries: 4 });
    const minted = await Promise.all(Array.from({ length: 6 }, (_, i) => ca.mint(`spiffe://a.org/w${i}`)));
    for (const m of minted) cache.verify(certs(m.chainDer), bundles);
    expect(cache.sizeFor(bundles)).toBe(4);
    // The most recent chain is still there; the first one is gone.
    cache.verify(certs(minted[5]!.chainDer), bundles);
    expect(cache.stats.hits).toBe(1);
    cache.verify(certs(minted[0]!.chainDer), bundles);
    expect(cache.stats.misses).toBe(7);
    expect(() => new X509SvidVerificationCache({ maxEntries: 0 })).toThrow(RangeError);
  });

  it('never caches against a source that may change (anything but X509BundleSet / X509Bundle)', () => {
    const cache = new X509SvidVerificationCache();
    let current: X509Bundle | undefined = bundles.get(A);
    const dynamic: X509BundleSource = { getX509BundleForTrustDomain: () => current };
    cache.verify(certs(leaf.chainDer), dynamic);
    current = new X509Bundle(A, [other.rootCert]);
    expect(() => cache.verify(certs(leaf.chainDer), dynamic)).toThrow(sdkError(X509Error, 'verification'));
    expect(cache.stats.hits).toBe(0);
    // A single X509Bundle is immutable too, and scopes its own entries.
    const single = bundles.get(A)!;
    cache.verify(certs(leaf.chainDer), single);
    cache.verify(certs(leaf.chainDer), single);
    expect(cache.stats.hits).toBe(1);
  });
});

describe('verifyPeer with the shared cache', () => {
  it('runs the Authorizer on every call, cached or not', () => {
    const set = new X509BundleSet([new X509Bundle(A, [ca.rootCert])]);
    const seen: string[] = [];
    const authorizer = (id: { toString(): string }) => void seen.push(id.toString());
    const before = peerVerificationCache.stats.hits;
    verifyPeer(certs(leaf.chainDer), set, authorizer);
    verifyPeer(certs(leaf.chainDer), set, authorizer);
    expect(peerVerificationCache.stats.hits).toBe(before + 1);
    expect(seen).toEqual([ID, ID]);
    expect(() => verifyPeer(certs(leaf.chainDer), set, authorizeId('spiffe://a.org/someone-else'))).toThrow(AuthorizationError);
  });
});
