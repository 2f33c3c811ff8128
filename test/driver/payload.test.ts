import { createHash, X509Certificate } from 'node:crypto';
import { X509Svid } from '@spire-csi/sdk/x509';
import { decodePem } from '../../sdk/src/x509/pem.js';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentX509Svid, BundleUpdate } from '../../driver/src/identity/identity-backend.js';
import {
  AgentSvidError,
  chooseSvid,
  describeChoice,
  describeSvid,
  validateAgentSvid,
} from '../../driver/src/session/agent-svid.js';
import { buildPayload, PayloadError, sameIdentityFacts } from '../../driver/src/storage/payload.js';
import { PemMemo } from '../../driver/src/storage/pem-memo.js';
import { DEFAULT_LAYOUT_OPTIONS, DEFAULT_FILES, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';

const NOW = new Date('2030-01-01T00:00:00Z');
const spec = (overrides: Partial<VolumeSpec> = {}): VolumeSpec => ({
  volumeId: 'csi-1',
  targetPath: '/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/spiffe/mount',
  pod: { name: 'web', namespace: 'default', uid: 'u', serviceAccount: 'web' },
  files: DEFAULT_FILES,
  bundleIncludeFederated: false,
  fsGroup: null,
  spiffeId: null,
  jwtAudiences: [],
  jwtSvidFile: 'jwt-svid.token',
  ...DEFAULT_LAYOUT_OPTIONS,
  ...overrides,
});

function agentSvid(id: string, minted: MintedSvid): AgentX509Svid {
  return { spiffeId: id, chainDer: minted.chainDer, keyDer: minted.keyDer, hint: '' };
}

describe('payload', () => {
  let ca: TestCa;
  let fed: TestCa;
  let other: TestCa;
  let minted: MintedSvid;
  let svid: AgentX509Svid;
  let bundles: BundleUpdate;

  beforeAll(async () => {
    ca = await TestCa.create('example.org');
    fed = await TestCa.create('partner.test');
    other = await TestCa.create('unrelated.test');
    const intermediate = await ca.intermediate();
    minted = await intermediate.mint('spiffe://example.org/web', { notBefore: new Date('2029-12-31T00:00:00Z'), notAfter: new Date('2030-01-02T00:00:00Z') });
    svid = agentSvid('spiffe://example.org/web', minted);
    bundles = new Map([
      ['example.org', ca.rootDer],
      ['partner.test', fed.rootDer],
      ['unrelated.test', other.rootDer],
    ]);
  });

  const text = (files: Map<string, { data: Buffer | string }>, name: string): string => String(files.get(name)?.data);

  it('writes the SPIFFE Filesystem Delivery files: credential bundle and one trust bundle per domain', () => {
    const { files } = buildPayload({ spec: spec(), svid, bundles, federatesWith: ['partner.test'], now: NOW });
    const credential = decodePem(text(files, 'credential-bundle.private-key.x509.pem'));
    expect(credential.map((b) => b.label)).toEqual(['PRIVATE KEY', 'CERTIFICATE', 'CERTIFICATE']);
    expect(credential[1]?.der.equals(minted.certDer)).toBe(true);
    expect(credential.some((b) => b.der.equals(ca.rootDer))).toBe(false);
    expect(X509Svid.parseCredentialBundle(text(files, 'credential-bundle.private-key.x509.pem')).id.toString()).toBe('spiffe://example.org/web');
    expect(decodePem(text(files, 'example.org.spiffe-trust-bundle.x509.pem')).map((b) => b.der)).toEqual([ca.rootDer]);
    expect(decodePem(text(files, 'partner.test.spiffe-trust-bundle.x509.pem')).map((b) => b.der)).toEqual([fed.rootDer]);
    expect(files.has('unrelated.test.spiffe-trust-bundle.x509.pem')).toBe(false);
    expect([...files.keys()].sort()).toEqual([
      'bundle.pem',
      'credential-bundle.private-key.x509.pem',
      'example.org.spiffe-trust-bundle.x509.pem',
      'identity.json',
      'partner.test.spiffe-trust-bundle.x509.pem',
      'svid.pem',
      'svid_key.pem',
    ]);
  });

  it('writes split files under the chosen names; federated roots only on opt-in', () => {
    const names = { svid: 'tls.crt', key: 'tls.key', bundle: 'ca.crt' };
    const plain = buildPayload({ spec: spec({ files: names }), svid, bundles, federatesWith: ['partner.test'], now: NOW }).files;
    expect(X509Svid.parse(text(plain, 'tls.crt'), text(plain, 'tls.key')).certificates).toHaveLength(2);
    expect(decodePem(text(plain, 'tls.key'))[0]?.label).toBe('PRIVATE KEY');
    expect(decodePem(text(plain, 'ca.crt')).map((b) => b.der)).toEqual([ca.rootDer]);
    const merged = buildPayload({ spec: spec({ files: names, bundleIncludeFederated: true }), svid, bundles, federatesWith: ['partner.test'], now: NOW });
    expect(decodePem(text(merged.files, 'ca.crt')).map((b) => b.der)).toEqual([ca.rootDer, fed.rootDer]);
  });

  it('sets modes: key material owner-only or group-readable with fsGroup, the rest world-readable', () => {
    const modes = (fsGroup: number | null): Record<string, number> =>
      Object.fromEntries(
        [...buildPayload({ spec: spec({ fsGroup }), svid, bundles, federatesWith: [], now: NOW }).files].map(([n, f]) => [n, f.mode]),
      );
    expect(modes(null)).toEqual({
      'credential-bundle.private-key.x509.pem': 0o400,
      'svid_key.pem': 0o400,
      'svid.pem': 0o444,
      'bundle.pem': 0o444,
      'example.org.spiffe-trust-bundle.x509.pem': 0o444,
      'identity.json': 0o444,
    });
    expect(modes(2000)['credential-bundle.private-key.x509.pem']).toBe(0o440);
    expect(modes(2000)['svid_key.pem']).toBe(0o440);
    expect(modes(2000)['svid.pem']).toBe(0o444);
  });

  it('describes the identity in identity.json without key material', () => {
    const { files, identity } = buildPayload({ spec: spec(), svid, bundles, federatesWith: ['nobundle.test', 'partner.test'], now: NOW });
    const json = JSON.parse(text(files, 'identity.json'));
    expect(json).toEqual(identity);
    expect(identity).toEqual({
      spiffeId: 'spiffe://example.org/web',
      hint: '',
      notBefore: '2029-12-31T00:00:00.000Z',
      notAfter: '2030-01-02T00:00:00.000Z',
      serial: new X509Certificate(minted.certDer).serialNumber,
      trustDomains: ['example.org', 'partner.test'],
      federatesWith: ['nobundle.test', 'partner.test'],
      updatedAt: NOW.toISOString(),
    });
    expect(text(files, 'identity.json')).not.toMatch(/PRIVATE|BEGIN/);
  });

  it('keeps the earlier names with layout-names 2026-02', () => {
    const earlier = spec({ layoutNames: '2026-02', credentialBundleFile: 'credential-bundle.pem' });
    const { files } = buildPayload({ spec: earlier, svid, bundles, federatesWith: ['partner.test'], now: NOW });
    expect([...files.keys()].sort()).toEqual([
      'bundle.pem',
      'credential-bundle.pem',
      'example.org.spiffe-trust-bundle.pem',
      'identity.json',
      'partner.test.spiffe-trust-bundle.pem',
      'svid.pem',
      'svid_key.pem',
    ]);
    expect(X509Svid.parseCredentialBundle(text(files, 'credential-bundle.pem')).id.toString()).toBe('spiffe://example.org/web');
  });

  it('writes the credential bundle under credential-bundle-file, trust bundles under the layout\'s names', () => {
    const { files } = buildPayload({ spec: spec({ credentialBundleFile: 'tls-bundle.pem' }), svid, bundles, federatesWith: [], now: NOW });
    expect(files.get('tls-bundle.pem')?.mode).toBe(0o400);
    expect(files.has('credential-bundle.private-key.x509.pem')).toBe(false);
    expect(files.has('example.org.spiffe-trust-bundle.x509.pem')).toBe(true);
  });

  it('puts the hint into identity.json', () => {
    const { identity } = buildPayload({ spec: spec(), svid: { ...svid, hint: 'internal' }, bundles, federatesWith: [], now: NOW });
    expect(identity.hint).toBe('internal');
  });

  describe('with all-svids', () => {
    let extraA: MintedSvid;
    let extraB: MintedSvid;
    beforeAll(async () => {
      extraA = await ca.mint('spiffe://example.org/admin');
      extraB = await ca.mint('spiffe://example.org/web');
    });
    const sha = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

    it.each<[string, Partial<VolumeSpec>, string[]]>([
      ['current names', {}, ['credential-bundle.private-key.x509.pem', '1.credential-bundle.private-key.x509.pem', '2.credential-bundle.private-key.x509.pem']],
      [
        'layout-names 2026-02',
        { layoutNames: '2026-02', credentialBundleFile: 'credential-bundle.pem' },
        ['credential-bundle.pem', '1.credential-bundle.pem', '2.credential-bundle.pem'],
      ],
      ['a renamed credential bundle', { credentialBundleFile: 'c.pem' }, ['c.pem', '1.c.pem', '2.c.pem']],
    ])('numbers the extra SVIDs in the given order and lists every credential bundle in hints.json (%s)', (_what, overrides, names) => {
      const { files } = buildPayload({
        spec: spec({ allSvids: true, fsGroup: 3000, ...overrides }),
        svid: { ...svid, hint: 'primary' },
        extras: [
          { svid: { ...agentSvid('spiffe://example.org/admin', extraA), hint: 'admin' } },
          { svid: { ...agentSvid('spiffe://example.org/web', extraB), hint: '' } },
        ],
        bundles,
        federatesWith: [],
        now: NOW,
      });
      const [primary, first, second] = names as [string, string, string];
      expect(X509Svid.parseCredentialBundle(text(files, primary)).id.toString()).toBe('spiffe://example.org/web');
      expect(X509Svid.parseCredentialBundle(text(files, first)).id.toString()).toBe('spiffe://example.org/admin');
      expect(X509Svid.parseCredentialBundle(text(files, second)).serialNumber).toBe(new X509Certificate(extraB.certDer).serialNumber);
      for (const name of names) expect(files.get(name)?.mode).toBe(0o440);
      expect(files.get('hints.json')?.mode).toBe(0o444);
      expect(JSON.parse(text(files, 'hints.json'))).toEqual({
        credentialBundles: [
          { file: primary, spiffeId: 'spiffe://example.org/web', hint: 'primary', leafSha256: sha(minted.certDer) },
          { file: first, spiffeId: 'spiffe://example.org/admin', hint: 'admin', leafSha256: sha(extraA.certDer) },
          { file: second, spiffeId: 'spiffe://example.org/web', hint: '', leafSha256: sha(extraB.certDer) },
        ],
      });
      expect(text(files, 'hints.json')).not.toMatch(/PRIVATE|BEGIN/);
    });

    it('writes hints.json for the chosen SVID alone when there is no other', () => {
      const { files } = buildPayload({ spec: spec({ allSvids: true }), svid, bundles, federatesWith: [], now: NOW });
      expect(JSON.parse(text(files, 'hints.json')).credentialBundles).toHaveLength(1);
      expect([...files.keys()].filter((name) => name.startsWith('1.'))).toEqual([]);
    });

    it('writes no hints.json without all-svids', () => {
      expect(buildPayload({ spec: spec(), svid, bundles, federatesWith: [], now: NOW }).files.has('hints.json')).toBe(false);
    });

    it('shares the PEM of an extra SVID with volumes that publish it as their chosen one', () => {
      const memo = new PemMemo();
      const parsed = X509Svid.fromDer(extraA.chainDer, extraA.keyDer);
      const admin = agentSvid('spiffe://example.org/admin', extraA);
      const asExtra = buildPayload({ spec: spec({ allSvids: true }), svid, extras: [{ svid: admin, parsed }], bundles, federatesWith: [], now: NOW, pem: memo });
      const asChosen = buildPayload({ spec: spec(), svid: admin, parsed, bundles, federatesWith: [], now: NOW, pem: memo });
      expect(asExtra.files.get('1.credential-bundle.private-key.x509.pem')?.data).toBe(asChosen.files.get('credential-bundle.private-key.x509.pem')?.data);
    });
  });

  it('is deterministic for the same input', () => {
    const input = { spec: spec(), svid, bundles, federatesWith: ['partner.test'], now: NOW };
    const a = buildPayload(input).files;
    const b = buildPayload(input).files;
    expect([...a]).toEqual([...b]);
  });

  it('gives the same bytes from the parsed leaf and the PEM memo, sharing them across volumes', () => {
    const parsed = X509Svid.fromDer(svid.chainDer, svid.keyDer);
    const memo = new PemMemo();
    const plain = buildPayload({ spec: spec(), svid, bundles, federatesWith: ['partner.test'], now: NOW }).files;
    const fast = buildPayload({ spec: spec(), svid, bundles, federatesWith: ['partner.test'], now: NOW, parsed, pem: memo }).files;
    const other = buildPayload({ spec: spec({ volumeId: 'csi-2', fsGroup: 2000 }), svid, bundles, federatesWith: ['partner.test'], now: NOW, parsed, pem: memo }).files;
    expect([...fast].map(([n, f]) => [n, String(f.data), f.mode])).toEqual([...plain].map(([n, f]) => [n, String(f.data), f.mode]));
    expect(other.get('credential-bundle.private-key.x509.pem')?.data).toBe(fast.get('credential-bundle.private-key.x509.pem')?.data);
    expect(other.get('example.org.spiffe-trust-bundle.x509.pem')?.data).toBe(fast.get('example.org.spiffe-trust-bundle.x509.pem')?.data);
  });

  it('keeps no byte buffer that is a slice of a larger block (a pooled slice pins its 8 KiB slab per volume)', () => {
    const parsed = X509Svid.fromDer(svid.chainDer, svid.keyDer);
    for (const input of [
      { spec: spec(), svid, bundles, federatesWith: ['partner.test'], now: NOW },
      { spec: spec({ bundleIncludeFederated: true }), svid, bundles, federatesWith: ['partner.test'], now: NOW, parsed, pem: new PemMemo() },
    ]) {
      for (const [name, file] of buildPayload(input).files) {
        if (typeof file.data === 'string') continue;
        expect(file.data.buffer.byteLength, name).toBe(file.data.length);
      }
    }
  });

  it('treats identity.json files that differ only in updatedAt as the same content', () => {
    const at = (now: Date): Buffer => Buffer.from(String(buildPayload({ spec: spec(), svid, bundles, federatesWith: [], now }).files.get('identity.json')?.data));
    const earlier = at(NOW);
    const later = at(new Date(NOW.getTime() + 60_000));
    expect(earlier.equals(later)).toBe(false);
    expect(sameIdentityFacts(earlier, later)).toBe(true);
    const federated = Buffer.from(String(buildPayload({ spec: spec(), svid, bundles, federatesWith: ['partner.test'], now: NOW }).files.get('identity.json')?.data));
    expect(sameIdentityFacts(earlier, federated)).toBe(false);
    expect(sameIdentityFacts(Buffer.from('not json'), later)).toBe(false);
    expect(sameIdentityFacts(Buffer.from('{"spiffeId":"x"}'), later)).toBe(false);
  });

  it('rejects a split name that collides with a standard file, and a missing own bundle', () => {
    const clash = spec({ files: { ...DEFAULT_FILES, bundle: 'example.org.spiffe-trust-bundle.x509.pem' } });
    expect(() => buildPayload({ spec: clash, svid, bundles, federatesWith: [], now: NOW })).toThrow(PayloadError);
    expect(() => buildPayload({ spec: spec(), svid, bundles: new Map(), federatesWith: [], now: NOW })).toThrow(/payload: no trust bundle for example.org/);
  });
});

describe('chooseSvid / validateAgentSvid', () => {
  let ca: TestCa;
  let a: MintedSvid;
  let b: MintedSvid;
  let bundles: BundleUpdate;
  const now = new Date();

  beforeAll(async () => {
    ca = await TestCa.create('example.org');
    a = await ca.mint('spiffe://example.org/a');
    b = await ca.mint('spiffe://example.org/b');
    bundles = new Map([['example.org', ca.rootDer]]);
  });

  it('chooses by hint, by SPIFFE ID and hint together, and reports what it looked for', () => {
    const svids = [
      { ...agentSvid('spiffe://example.org/a', a), hint: 'internal' },
      { ...agentSvid('spiffe://example.org/b', b), hint: 'external' },
      { ...agentSvid('spiffe://example.org/a', b), hint: 'external' },
    ];
    const update = { svids, federatesWith: [] };
    expect(chooseSvid(update, null, 'external')).toBe(svids[1]);
    expect(chooseSvid(update, 'spiffe://example.org/a', 'external')).toBe(svids[2]);
    expect(chooseSvid(update, 'spiffe://example.org/a', null)).toBe(svids[0]);
    expect(chooseSvid(update, 'spiffe://example.org/b', 'internal')).toBeUndefined();
    expect(chooseSvid(update, null, 'none')).toBeUndefined();
    expect(describeChoice('spiffe://example.org/a', 'x')).toBe('spiffe://example.org/a with hint "x"');
    expect(describeChoice(null, 'x')).toBe('hint "x"');
    expect(describeSvid(svids[0]!)).toBe('spiffe://example.org/a (hint "internal")');
  });

  it('chooses by SPIFFE ID, else the first, else nothing', () => {
    const update = { svids: [agentSvid('spiffe://example.org/a', a), agentSvid('spiffe://example.org/b', b)], federatesWith: [] };
    expect(chooseSvid(update, 'spiffe://example.org/b')?.spiffeId).toBe('spiffe://example.org/b');
    expect(chooseSvid(update, null)?.spiffeId).toBe('spiffe://example.org/a');
    expect(chooseSvid(update, 'spiffe://example.org/c')).toBeUndefined();
    expect(chooseSvid({ svids: [], federatesWith: [] }, null)).toBeUndefined();
  });

  // federates_with is normalized once, where it enters: identity/delegated/wire.ts (and its tests).

  it('accepts a good SVID', () => {
    expect(validateAgentSvid(agentSvid('spiffe://example.org/a', a), bundles, { now }).id.toString()).toBe('spiffe://example.org/a');
  });

  const rejects = (svid: AgentX509Svid, problem: 'invalid' | 'waiting', pattern: RegExp, b2: BundleUpdate = bundles): void => {
    let caught: unknown;
    try {
      validateAgentSvid(svid, b2, { now, federatesWith: ['partner.test'] });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AgentSvidError);
    expect((caught as AgentSvidError).problem).toBe(problem);
    expect((caught as Error).message).toMatch(/^agent-svid: /);
    expect((caught as Error).message).toMatch(pattern);
    expect((caught as Error).message).not.toMatch(/PRIVATE KEY|MIG/);
  };

  it('rejects bad agent data with a reason', async () => {
    const good = agentSvid('spiffe://example.org/a', a);
    rejects({ ...good, chainDer: [Buffer.from('garbage')] }, 'invalid', /unusable X.509-SVID/);
    rejects({ ...good, keyDer: b.keyDer }, 'invalid', /unusable X.509-SVID/);
    rejects({ ...good, spiffeId: 'https://example.org/a' }, 'invalid', /malformed SPIFFE ID/);
    rejects({ ...good, spiffeId: 'spiffe://example.org/other' }, 'invalid', /labelled the SVID spiffe:\/\/example.org\/other/);
    rejects(good, 'invalid', /trust bundle for example.org is empty/, new Map([['example.org', Buffer.alloc(0)]]));
    rejects(good, 'invalid', /not valid DER/, new Map([['example.org', ca.rootDer], ['partner.test', Buffer.from('xx')]]));
    rejects(good, 'waiting', /no trust bundle for example.org yet/, new Map());
    const expired = await ca.mint('spiffe://example.org/a', { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
    rejects(agentSvid('spiffe://example.org/a', expired), 'invalid', /expired/);
  });
});
