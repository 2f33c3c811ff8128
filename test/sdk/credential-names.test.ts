/**
 * Issue #15: the SPIFFE Filesystem Delivery names settled on `.x509.pem`; the SDK reads every
 * spelling the draft has had, prefers the newest when a folder holds two, and picks one SVID of a
 * folder holding several through hints.json.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CREDENTIAL_BUNDLE_FILE,
  CREDENTIAL_BUNDLE_FILES,
  CURRENT_LAYOUT_NAMES,
  extraCredentialBundleFileName,
  isExtraCredentialBundleFileName,
  LAYOUT_NAMES_VERSIONS,
  LayoutError,
  layoutNames,
  RESERVED_FILE_NAMES,
  RESERVED_FILE_SUFFIXES,
  splitTrustBundleFileName,
  TRUST_BUNDLE_SUFFIX,
  trustBundleFileName,
  type HintsFile,
  type LayoutNamesVersion,
} from '../../sdk/src/layout/layout.js';
import { parseCredentialFiles, selectCredentialFiles, trustDomainOfBundleFile } from '../../sdk/src/source/credential-files.js';
import { credentialBundleFileOf, parseHintsFile, pickHintsEntry, trustBundleFilesOf } from '../../sdk/src/source/credential-names.js';
import { SourceError } from '../../sdk/src/source/errors.js';
import { FileSource, type FileSourceOptions, type FileSourceWarning } from '../../sdk/src/source/file-source.js';
import { CredentialFolder } from '../helpers/credential-folder.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';

const TD = 'example.org';
let ca: TestCa;
let web: MintedSvid;
let admin: MintedSvid;
let webOther: MintedSvid;

beforeAll(async () => {
  ca = await TestCa.create(TD);
  web = await ca.mint(`spiffe://${TD}/web`);
  admin = await ca.mint(`spiffe://${TD}/admin`);
  webOther = await ca.mint(`spiffe://${TD}/web`);
});

const bytes = (record: Record<string, string>): Map<string, Buffer> => new Map(Object.entries(record).map(([n, t]) => [n, Buffer.from(t)]));
const sha = (svid: MintedSvid): string => createHash('sha256').update(svid.certDer).digest('hex');
const bundle = (svid: MintedSvid): string => svid.keyPem + svid.chainPem;

/** A folder as the driver writes it with all-svids: web (hint "internal") first, then admin, then another web. */
function allSvidsFolder(names: LayoutNamesVersion = CURRENT_LAYOUT_NAMES): Record<string, string> {
  const { credentialBundle } = layoutNames(names);
  const hints: HintsFile = {
    credentialBundles: [
      { file: credentialBundle, spiffeId: `spiffe://${TD}/web`, hint: 'internal', leafSha256: sha(web) },
      { file: extraCredentialBundleFileName(1, credentialBundle), spiffeId: `spiffe://${TD}/admin`, hint: 'admin', leafSha256: sha(admin) },
      { file: extraCredentialBundleFileName(2, credentialBundle), spiffeId: `spiffe://${TD}/web`, hint: 'external', leafSha256: sha(webOther) },
    ],
  };
  return {
    [credentialBundle]: bundle(web),
    [extraCredentialBundleFileName(1, credentialBundle)]: bundle(admin),
    [extraCredentialBundleFileName(2, credentialBundle)]: bundle(webOther),
    [trustBundleFileName(TD, names)]: ca.rootPem,
    'hints.json': JSON.stringify(hints),
    'svid.pem': web.chainPem,
    'svid_key.pem': web.keyPem,
    'bundle.pem': ca.rootPem,
    'identity.json': '{}',
    'jwt-svid.token': 'x.y.z',
  };
}

describe('the layout names', () => {
  it('has the x509 names as the current version and keeps the 2026-02 ones', () => {
    expect(LAYOUT_NAMES_VERSIONS).toEqual(['2026-08', '2026-02']);
    expect(CURRENT_LAYOUT_NAMES).toBe('2026-08');
    expect(layoutNames()).toEqual({ credentialBundle: 'credential-bundle.private-key.x509.pem', trustBundleSuffix: '.spiffe-trust-bundle.x509.pem' });
    expect(layoutNames('2026-02')).toEqual({ credentialBundle: 'credential-bundle.pem', trustBundleSuffix: '.spiffe-trust-bundle.pem' });
    expect(CREDENTIAL_BUNDLE_FILE).toBe('credential-bundle.private-key.x509.pem');
    expect(TRUST_BUNDLE_SUFFIX).toBe('.spiffe-trust-bundle.x509.pem');
    expect(CREDENTIAL_BUNDLE_FILES).toEqual(['credential-bundle.private-key.x509.pem', 'credential-bundle.private-key.pem', 'credential-bundle.pem']);
    expect(trustBundleFileName('a.org')).toBe('a.org.spiffe-trust-bundle.x509.pem');
    expect(trustBundleFileName('a.org', '2026-02')).toBe('a.org.spiffe-trust-bundle.pem');
    expect(() => layoutNames('current' as LayoutNamesVersion)).toThrow(LayoutError);
    expect(() => layoutNames('current' as LayoutNamesVersion)).toThrow(/use one of 2026-08, 2026-02/);
  });

  it('reserves every spelling, hints.json and both trust bundle suffixes', () => {
    expect(RESERVED_FILE_NAMES).toEqual([...CREDENTIAL_BUNDLE_FILES, 'identity.json', 'hints.json']);
    expect(RESERVED_FILE_SUFFIXES).toEqual(['.spiffe-trust-bundle.x509.pem', '.spiffe-trust-bundle.pem', '.jwt-bundle.json']);
  });

  it.each<[string, string, boolean]>([
    ['1.credential-bundle.private-key.x509.pem', CREDENTIAL_BUNDLE_FILE, true],
    ['12.credential-bundle.pem', 'credential-bundle.pem', true],
    ['0.credential-bundle.pem', 'credential-bundle.pem', false],
    ['01.credential-bundle.pem', 'credential-bundle.pem', false],
    ['credential-bundle.pem', 'credential-bundle.pem', false],
    ['a.credential-bundle.pem', 'credential-bundle.pem', false],
    ['1.credential-bundle.pem', CREDENTIAL_BUNDLE_FILE, false],
  ])('%s is an extra SVID of %s: %s', (name, primary, expected) => {
    expect(isExtraCredentialBundleFileName(name, primary)).toBe(expected);
  });

  it('numbers extra SVIDs from 1', () => {
    expect(extraCredentialBundleFileName(1)).toBe('1.credential-bundle.private-key.x509.pem');
    expect(extraCredentialBundleFileName(3, 'credential-bundle.pem')).toBe('3.credential-bundle.pem');
    expect(() => extraCredentialBundleFileName(0)).toThrow(/positive integer/);
  });

  it.each<[string, { trustDomain: string; suffix: string } | undefined]>([
    ['example.org.spiffe-trust-bundle.x509.pem', { trustDomain: 'example.org', suffix: '.spiffe-trust-bundle.x509.pem' }],
    ['example.org.spiffe-trust-bundle.pem', { trustDomain: 'example.org', suffix: '.spiffe-trust-bundle.pem' }],
    ['.spiffe-trust-bundle.pem', undefined],
    ['example.org.jwt-bundle.json', undefined],
  ])('splits %s', (name, expected) => {
    expect(splitTrustBundleFileName(name)).toEqual(expected);
  });
});

describe('reading every spelling', () => {
  it.each<[string, string, string]>([
    ['the current names', 'credential-bundle.private-key.x509.pem', '.spiffe-trust-bundle.x509.pem'],
    ['the 2026-02 names', 'credential-bundle.pem', '.spiffe-trust-bundle.pem'],
    ['the private-key spelling with the old suffix', 'credential-bundle.private-key.pem', '.spiffe-trust-bundle.pem'],
    ['the old credential bundle with the new suffix', 'credential-bundle.pem', '.spiffe-trust-bundle.x509.pem'],
  ])('%s', (_what, credentialBundle, suffix) => {
    const record = { [credentialBundle]: bundle(web), [`${TD}${suffix}`]: ca.rootPem, [`partner.test${suffix}`]: ca.rootPem };
    expect(selectCredentialFiles(Object.keys(record)).sort()).toEqual(Object.keys(record).sort());
    const parsed = parseCredentialFiles(bytes(record));
    expect(parsed.material.svid.serialNumber).toBe(web.cert.serialNumber);
    expect(parsed.material.bundles.trustDomains().map((td) => td.name).sort()).toEqual(['example.org', 'partner.test']);
    expect(parsed.sources[0]).toBe(credentialBundle);
    expect(parsed.duplicates).toEqual([]);
    expect(trustDomainOfBundleFile(`${TD}${suffix}`)?.name).toBe(TD);
  });

  it.each<[string, string[], { file?: string; duplicate?: { used: string; ignored: string[] } }]>([
    ['none', ['svid.pem'], {}],
    ['one', ['credential-bundle.pem'], { file: 'credential-bundle.pem' }],
    [
      'all three',
      ['credential-bundle.pem', 'credential-bundle.private-key.pem', 'credential-bundle.private-key.x509.pem'],
      { file: 'credential-bundle.private-key.x509.pem', duplicate: { used: 'credential-bundle.private-key.x509.pem', ignored: ['credential-bundle.private-key.pem', 'credential-bundle.pem'] } },
    ],
  ])('picks the newest credential bundle spelling of %s', (_what, names, expected) => {
    expect(credentialBundleFileOf(names)).toEqual(expected);
  });

  it('picks the newest trust bundle spelling per trust domain and names the rest', () => {
    const { files, duplicates } = trustBundleFilesOf([
      'b.org.spiffe-trust-bundle.pem',
      'a.org.spiffe-trust-bundle.pem',
      'a.org.spiffe-trust-bundle.x509.pem',
      'Not_A_Domain.spiffe-trust-bundle.x509.pem',
    ]);
    expect([...files].map(([td, f]) => [td, f.file])).toEqual([
      ['a.org', 'a.org.spiffe-trust-bundle.x509.pem'],
      ['b.org', 'b.org.spiffe-trust-bundle.pem'],
    ]);
    expect(duplicates).toEqual([{ used: 'a.org.spiffe-trust-bundle.x509.pem', ignored: ['a.org.spiffe-trust-bundle.pem'] }]);
  });

  it('reads the newest spellings of a folder holding two, and reports both duplicates', async () => {
    const stale = await TestCa.create(TD);
    const record = {
      'credential-bundle.private-key.x509.pem': bundle(web),
      'credential-bundle.pem': bundle(admin),
      [`${TD}.spiffe-trust-bundle.x509.pem`]: ca.rootPem,
      [`${TD}.spiffe-trust-bundle.pem`]: stale.rootPem,
    };
    const parsed = parseCredentialFiles(bytes(record));
    expect(parsed.material.svid.id.toString()).toBe(`spiffe://${TD}/web`);
    expect(parsed.material.bundles.get(TD)!.authorities[0]!.raw.equals(ca.rootDer)).toBe(true);
    expect(parsed.duplicates).toEqual([
      { used: 'credential-bundle.private-key.x509.pem', ignored: ['credential-bundle.pem'] },
      { used: `${TD}.spiffe-trust-bundle.x509.pem`, ignored: [`${TD}.spiffe-trust-bundle.pem`] },
    ]);
  });
});

describe('hints.json', () => {
  it('reads the entries the driver writes', () => {
    const parsed = parseHintsFile(Buffer.from(allSvidsFolder()['hints.json']!));
    expect('entries' in parsed && parsed.entries.map((e) => e.hint)).toEqual(['internal', 'admin', 'external']);
  });

  it.each<[string, string, RegExp]>([
    ['not JSON', '{', /hints\.json is not JSON/],
    ['no list', '{}', /no "credentialBundles" array/],
    ['a path', JSON.stringify({ credentialBundles: [{ file: '../x.pem', spiffeId: 'a', hint: '', leafSha256: '0'.repeat(64) }] }), /plain file name/],
    ['a hidden file', JSON.stringify({ credentialBundles: [{ file: '..data/x.pem', spiffeId: 'a', hint: '', leafSha256: '0'.repeat(64) }] }), /plain file name/],
    ['no hint', JSON.stringify({ credentialBundles: [{ file: 'x.pem', spiffeId: 'a', leafSha256: '0'.repeat(64) }] }), /"spiffeId" and "hint"/],
    ['a bad fingerprint', JSON.stringify({ credentialBundles: [{ file: 'x.pem', spiffeId: 'a', hint: '', leafSha256: 'AB' }] }), /64 lowercase hex/],
  ])('refuses %s', (_what, text, problem) => {
    const parsed = parseHintsFile(Buffer.from(text));
    expect('problem' in parsed && parsed.problem).toMatch(problem);
  });

  it('picks the first entry matching every asked field', () => {
    const parsed = parseHintsFile(Buffer.from(allSvidsFolder()['hints.json']!));
    if (!('entries' in parsed)) throw new Error(parsed.problem);
    expect(pickHintsEntry(parsed.entries, { spiffeId: `spiffe://${TD}/web` })?.hint).toBe('internal');
    expect(pickHintsEntry(parsed.entries, { spiffeId: `spiffe://${TD}/web`, hint: 'external' })?.file).toBe('2.credential-bundle.private-key.x509.pem');
    expect(pickHintsEntry(parsed.entries, { hint: 'admin' })?.spiffeId).toBe(`spiffe://${TD}/admin`);
    expect(pickHintsEntry(parsed.entries, { spiffeId: `spiffe://${TD}/admin`, hint: 'internal' })).toBeUndefined();
  });

  it.each<[string, LayoutNamesVersion, FileSourceOptions, string, string]>([
    ['the primary file without a choice', '2026-08', {}, `spiffe://${TD}/web`, 'internal'],
    ['by hint', '2026-08', { hint: 'admin' }, `spiffe://${TD}/admin`, 'admin'],
    ['by SPIFFE ID and hint', '2026-08', { spiffeId: `spiffe://${TD}/web`, hint: 'external' }, `spiffe://${TD}/web`, 'external'],
    ['by hint, 2026-02 names', '2026-02', { hint: 'external' }, `spiffe://${TD}/web`, 'external'],
  ])('FileSource loads %s', async (_what, names, options, spiffeId, hint) => {
    const all = allSvidsFolder(names);
    const expected = { internal: web, admin, external: webOther }[hint]!;
    const selected = selectCredentialFiles(Object.keys(all), options);
    // Tokens and identity.json never matter for X.509 material, so their updates cause no re-read.
    expect(selected).not.toContain('jwt-svid.token');
    expect(selected).not.toContain('identity.json');
    const parsed = parseCredentialFiles(bytes(Object.fromEntries(selected.map((n) => [n, all[n]!]))), options);
    expect(parsed.material.svid.id.toString()).toBe(spiffeId);
    expect(parsed.material.svid.serialNumber).toBe(expected.cert.serialNumber);
  });

  it.each<[string, Record<string, string> | ((all: Record<string, string>) => Record<string, string>), FileSourceOptions, string, RegExp]>([
    ['a hint hints.json does not list', (all) => all, { hint: 'nope' }, 'missing', /hints\.json lists no SVID hint "nope"; it lists spiffe:\/\/example\.org\/web \(hint "internal"\)/],
    ['a hint without hints.json', (all) => ({ ...all, 'hints.json': '' }), { hint: 'admin' }, 'invalid', /hints\.json is not JSON/],
    [
      'a file hints.json names that is gone',
      (all) => Object.fromEntries(Object.entries(all).filter(([n]) => n !== '1.credential-bundle.private-key.x509.pem')),
      { hint: 'admin' },
      'invalid',
      /hints\.json names 1\.credential-bundle\.private-key\.x509\.pem for hint "admin", but the folder has no such PEM file/,
    ],
    [
      'a file that holds another certificate than hints.json lists',
      (all) => ({ ...all, '1.credential-bundle.private-key.x509.pem': bundle(web) }),
      { hint: 'admin' },
      'invalid',
      /holds spiffe:\/\/example\.org\/web, but hints\.json says spiffe:\/\/example\.org\/admin/,
    ],
    [
      'a file with the listed ID but another leaf',
      (all) => ({ ...all, '2.credential-bundle.private-key.x509.pem': bundle(web) }),
      { hint: 'external' },
      'invalid',
      /holds another certificate than the one hints\.json lists for it/,
    ],
  ])('refuses %s', (_what, change, options, kind, message) => {
    const record = typeof change === 'function' ? change(allSvidsFolder()) : change;
    let caught: unknown;
    try {
      parseCredentialFiles(bytes(record), options);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SourceError);
    expect((caught as SourceError).kind).toBe(kind);
    expect((caught as SourceError).message).toMatch(message);
  });

  it('without hints.json, takes the folder SVID when it is the SPIFFE ID asked for, and says why otherwise', () => {
    const single = { 'credential-bundle.private-key.x509.pem': bundle(web), [`${TD}.spiffe-trust-bundle.x509.pem`]: ca.rootPem };
    expect(parseCredentialFiles(bytes(single), { spiffeId: `spiffe://${TD}/web` }).material.svid.serialNumber).toBe(web.cert.serialNumber);
    expect(() => parseCredentialFiles(bytes(single), { spiffeId: `spiffe://${TD}/admin` })).toThrow(
      /the folder holds spiffe:\/\/example\.org\/web, not spiffe:\/\/example\.org\/admin, and no hints\.json/,
    );
    expect(() => parseCredentialFiles(bytes(single), { hint: 'internal' })).toThrow(/no hints\.json in the folder, so no SVID can be picked by hint "internal"/);
  });

  it.each<[FileSourceOptions, RegExp]>([
    [{ spiffeId: 'not-an-id' }, /spiffeId "not-an-id" is not a SPIFFE ID/],
    [{ hint: '' }, /hint must be a non-empty string/],
    [{ hint: 'x', layout: 'split' }, /do not apply to layout "split"/],
  ])('refuses the options %j', (options, message) => {
    expect(() => new FileSource('/nonexistent', options)).toThrow(message);
  });
});

describe('FileSource on a folder of the new names', () => {
  const roots: string[] = [];
  const sources: FileSource[] = [];
  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.close()));
    await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
  });

  const open = async (files: Record<string, string>, options: FileSourceOptions = {}): Promise<{ source: FileSource; folder: CredentialFolder; warnings: FileSourceWarning[] }> => {
    const { folder, root } = await CredentialFolder.create();
    roots.push(root);
    await folder.write(files);
    const source = new FileSource(folder.path, { debounceMs: 5, recheckIntervalMs: 600_000, ...options });
    sources.push(source);
    const warnings: FileSourceWarning[] = [];
    source.on('warning', (w) => warnings.push(w));
    source.on('error', () => {});
    return { source, folder, warnings };
  };

  it('loads the hinted SVID and follows its rotation', async () => {
    const { source, folder } = await open(allSvidsFolder(), { hint: 'admin' });
    expect((await source.ready(5_000)).svid.id.toString()).toBe(`spiffe://${TD}/admin`);
    const rotated = await ca.mint(`spiffe://${TD}/admin`);
    const next = allSvidsFolder();
    next['1.credential-bundle.private-key.x509.pem'] = bundle(rotated);
    const hints = JSON.parse(next['hints.json']!) as HintsFile;
    next['hints.json'] = JSON.stringify({ credentialBundles: hints.credentialBundles.map((e) => (e.hint === 'admin' ? { ...e, leafSha256: sha(rotated) } : e)) });
    await folder.write(next);
    await waitFor(() => source.getX509Svid().serialNumber === rotated.cert.serialNumber, { message: 'the rotated admin SVID' });
  });

  it('warns once about two spellings of one file, while they stay', async () => {
    const both = {
      'credential-bundle.private-key.x509.pem': bundle(web),
      'credential-bundle.pem': bundle(admin),
      [`${TD}.spiffe-trust-bundle.x509.pem`]: ca.rootPem,
    };
    const { source, folder, warnings } = await open(both);
    expect((await source.ready(5_000)).svid.id.toString()).toBe(`spiffe://${TD}/web`);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toBeInstanceOf(SourceError);
    expect(warnings[0]).toMatchObject({
      kind: 'duplicate-spelling',
      file: 'credential-bundle.private-key.x509.pem',
      ignored: ['credential-bundle.pem'],
      spiffeId: `spiffe://${TD}/web`,
    });
    expect(warnings[0]!.message).toMatch(/^filesource: .* holds credential-bundle\.private-key\.x509\.pem and credential-bundle\.pem, spellings of the same file; reading the newest/);
    // A rotation that keeps both spellings is not warned about again.
    const rotated = await ca.mint(`spiffe://${TD}/web`);
    await folder.write({ ...both, 'credential-bundle.private-key.x509.pem': bundle(rotated) });
    await waitFor(() => source.getX509Svid().serialNumber === rotated.cert.serialNumber, { message: 'the rotated SVID' });
    expect(warnings).toHaveLength(1);
    // Gone and back: warned again.
    await folder.write({ 'credential-bundle.private-key.x509.pem': bundle(web), [`${TD}.spiffe-trust-bundle.x509.pem`]: ca.rootPem });
    await waitFor(() => source.getX509Svid().serialNumber === web.cert.serialNumber, { message: 'the single spelling' });
    await folder.write(both);
    await waitFor(() => source.getX509Svid().serialNumber === web.cert.serialNumber && warnings.length === 2, { message: 'a second warning' });
  });
});
