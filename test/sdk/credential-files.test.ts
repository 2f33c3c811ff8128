import { beforeAll, describe, expect, it } from 'vitest';
import {
  parseCredentialFiles,
  resolveSplitFileNames,
  selectCredentialFiles,
  trustDomainOfBundleFile,
  type CredentialFilesOptions,
} from '../../sdk/src/source/credential-files.js';
import { SourceError, type SourceErrorKind } from '../../sdk/src/source/errors.js';
import { locateCredentialFolder } from '../../sdk/src/source/locate.js';
import { credentialFiles } from '../helpers/credential-folder.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';

let ca: TestCa;
let otherCa: TestCa;
let fedCa: TestCa;
let svid: MintedSvid;
let other: MintedSvid;

beforeAll(async () => {
  ca = await TestCa.create('example.org');
  otherCa = await TestCa.create('example.org');
  fedCa = await TestCa.create('partner.test');
  svid = await ca.mint('spiffe://example.org/workload');
  other = await otherCa.mint('spiffe://example.org/other');
});

function files(record: Record<string, string>): Map<string, Buffer> {
  return new Map(Object.entries(record).map(([name, text]) => [name, Buffer.from(text)]));
}

function expectFailure(fn: () => unknown, kind: SourceErrorKind, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SourceError);
  expect((caught as SourceError).kind).toBe(kind);
  expect((caught as SourceError).message).toMatch(/^filesource: /);
  expect((caught as SourceError).message).toMatch(pattern);
  // Whatever went wrong, no key material ends up in the message.
  for (const key of [svid.keyPem, other.keyPem]) {
    expect((caught as SourceError).message).not.toContain(key.split('\n')[1]!.slice(0, 32));
  }
}

describe('parseCredentialFiles: SPIFFE Filesystem Delivery layout', () => {
  it('reads credential-bundle.pem and the own trust bundle', () => {
    const parsed = parseCredentialFiles(files(credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem, split: false })));
    expect(parsed.layout).toBe('credential-bundle');
    expect(parsed.material.svid.id.toString()).toBe('spiffe://example.org/workload');
    expect(parsed.material.svid.serialNumber).toBe(svid.cert.serialNumber);
    expect(parsed.material.bundles.trustDomains().map((td) => td.name)).toEqual(['example.org']);
    expect(parsed.material.bundles.get('example.org')!.authorities[0]!.raw.equals(ca.rootDer)).toBe(true);
    expect(parsed.sources).toEqual(['credential-bundle.pem', 'example.org.spiffe-trust-bundle.pem']);
  });

  it('accepts the credential-bundle.private-key.pem spelling of the draft', () => {
    const record = credentialFiles(svid, {
      trustDomain: 'example.org',
      bundlePem: ca.rootPem,
      split: false,
      credentialBundleName: 'credential-bundle.private-key.pem',
    });
    expect(Object.keys(record)).toContain('credential-bundle.private-key.pem');
    expect(parseCredentialFiles(files(record)).material.svid.serialNumber).toBe(svid.cert.serialNumber);
  });

  it('prefers the newer credential-bundle.private-key.pem when both spellings exist, and says so', () => {
    const record = credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem, split: false });
    record['credential-bundle.private-key.pem'] = other.keyPem + other.chainPem;
    const parsed = parseCredentialFiles(files(record));
    expect(parsed.material.svid.serialNumber).toBe(other.cert.serialNumber);
    expect(parsed.duplicates).toEqual([{ used: 'credential-bundle.private-key.pem', ignored: ['credential-bundle.pem'] }]);
  });

  it('keeps one bundle per federated trust domain, never merged', () => {
    const parsed = parseCredentialFiles(
      files(credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem, federated: { 'partner.test': fedCa.rootPem } })),
    );
    const bundles = parsed.material.bundles;
    expect(bundles.trustDomains().map((td) => td.name).sort()).toEqual(['example.org', 'partner.test']);
    expect(bundles.get('partner.test')!.authorities).toHaveLength(1);
    expect(bundles.get('partner.test')!.authorities[0]!.raw.equals(fedCa.rootDer)).toBe(true);
    expect(bundles.get('example.org')!.authorities).toHaveLength(1);
  });

  it('treats a federated bundle file without certificates as absent', () => {
    const parsed = parseCredentialFiles(
      files(credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem, federated: { 'partner.test': '' } })),
    );
    expect(parsed.material.bundles.has('partner.test')).toBe(false);
  });

  it('ignores files whose prefix is not a trust domain name', () => {
    const record = credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem });
    record['Not_A_Domain.spiffe-trust-bundle.pem'] = 'garbage';
    record['identity.json'] = '{}';
    expect(parseCredentialFiles(files(record)).material.bundles.size).toBe(1);
  });

  const failures: [string, () => Record<string, string>, SourceErrorKind, RegExp][] = [
    [
      'own-trust-bundle-missing',
      () => ({ 'credential-bundle.pem': svid.keyPem + svid.chainPem, 'partner.test.spiffe-trust-bundle.pem': fedCa.rootPem }),
      'invalid',
      /own trust domain "example\.org" \(expected a non-empty example\.org\.spiffe-trust-bundle\.x509\.pem or example\.org\.spiffe-trust-bundle\.pem\)/,
    ],
    [
      'own-trust-bundle-empty',
      () => ({ 'credential-bundle.pem': svid.keyPem + svid.chainPem, 'example.org.spiffe-trust-bundle.pem': '\n' }),
      'invalid',
      /own trust domain "example\.org"/,
    ],
    [
      'key-does-not-match-leaf',
      () => ({ 'credential-bundle.pem': other.keyPem + svid.chainPem, 'example.org.spiffe-trust-bundle.pem': ca.rootPem }),
      'invalid',
      /credential-bundle\.pem: x509svid: private key does not match/,
    ],
    [
      'certificate-before-key',
      () => ({ 'credential-bundle.pem': svid.chainPem + svid.keyPem, 'example.org.spiffe-trust-bundle.pem': ca.rootPem }),
      'invalid',
      /credential-bundle\.pem: x509svid: credential bundle must start with a PKCS#8 "PRIVATE KEY" block/,
    ],
    [
      'credential-bundle-garbage',
      () => ({ 'credential-bundle.pem': 'not pem at all', 'example.org.spiffe-trust-bundle.pem': ca.rootPem }),
      'invalid',
      /credential-bundle\.pem: /,
    ],
    [
      'credential-bundle-truncated',
      () => {
        const full = svid.keyPem + svid.chainPem;
        return { 'credential-bundle.pem': full.slice(0, full.length - 40), 'example.org.spiffe-trust-bundle.pem': ca.rootPem };
      },
      'invalid',
      /credential-bundle\.pem: /,
    ],
    [
      'federated-bundle-garbage',
      () => ({
        'credential-bundle.pem': svid.keyPem + svid.chainPem,
        'example.org.spiffe-trust-bundle.pem': ca.rootPem,
        'partner.test.spiffe-trust-bundle.pem': '-----BEGIN CERTIFICATE-----\nAAAA\n',
      }),
      'invalid',
      /partner\.test\.spiffe-trust-bundle\.pem: /,
    ],
    ['no-files', () => ({ 'identity.json': '{}' }), 'missing', /no credential files \(expected credential-bundle\.private-key\.x509\.pem or credential-bundle\.private-key\.pem or credential-bundle\.pem, or/],
    [
      'split-key-missing',
      () => ({ 'svid.pem': svid.chainPem, 'bundle.pem': ca.rootPem }),
      'missing',
      /split credential files missing: svid_key\.pem/,
    ],
    [
      'split-key-does-not-match',
      () => ({ 'svid.pem': svid.chainPem, 'svid_key.pem': other.keyPem, 'bundle.pem': ca.rootPem }),
      'invalid',
      /svid\.pem \+ svid_key\.pem: x509svid: private key does not match/,
    ],
    [
      'split-bundle-empty',
      () => ({ 'svid.pem': svid.chainPem, 'svid_key.pem': svid.keyPem, 'bundle.pem': '' }),
      'invalid',
      /bundle\.pem holds no certificates/,
    ],
  ];
  it.each(failures)('rejects %s', (_name, make, kind, pattern) => {
    expectFailure(() => parseCredentialFiles(files(make())), kind, pattern);
  });
});

describe('parseCredentialFiles: split files', () => {
  it('reads svid.pem, svid_key.pem and bundle.pem when there is no credential bundle', () => {
    const parsed = parseCredentialFiles(
      files(credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem, credentialBundle: false })),
    );
    expect(parsed.layout).toBe('split');
    expect(parsed.material.svid.serialNumber).toBe(svid.cert.serialNumber);
    expect(parsed.sources).toEqual(['svid.pem', 'svid_key.pem', 'bundle.pem']);
  });

  it('takes the roots of bundle.pem as the own trust domain, except those naming another one', () => {
    const record = { 'svid.pem': svid.chainPem, 'svid_key.pem': svid.keyPem, 'bundle.pem': ca.rootPem + otherCa.rootPem + fedCa.rootPem };
    const parsed = parseCredentialFiles(files(record));
    const bundles = parsed.material.bundles;
    expect(bundles.trustDomains().map((td) => td.name)).toEqual(['example.org']);
    expect(bundles.get('example.org')!.authorities.map((cert) => cert.fingerprint256)).toEqual([
      ca.rootCert.fingerprint256,
      otherCa.rootCert.fingerprint256,
    ]);
    expect(parsed.foreignRoots).toEqual([{ file: 'bundle.pem', trustDomain: 'partner.test', fingerprint256: fedCa.rootCert.fingerprint256 }]);
  });

  it('drops roots whose SPIFFE URI SAN is not exactly the own trust domain, keeps roots without one', async () => {
    const [upper, badId, withPath, none, https] = await Promise.all([
      TestCa.create('example.org', { uris: ['SPIFFE://example.org'] }),
      TestCa.create('example.org', { uris: ['spiffe://Example.org'] }),
      TestCa.create('example.org', { uris: ['spiffe://partner.test/ca'] }),
      TestCa.create('example.org', { uris: [] }),
      TestCa.create('example.org', { uris: ['https://example.org/ca'] }),
    ]);
    const record = {
      'svid.pem': svid.chainPem,
      'svid_key.pem': svid.keyPem,
      'bundle.pem': [ca, upper, badId, withPath, none, https].map((c) => c.rootPem).join(''),
    };
    const parsed = parseCredentialFiles(files(record));
    expect(parsed.material.bundles.get('example.org')!.authorities.map((cert) => cert.fingerprint256)).toEqual(
      [ca, none, https].map((c) => c.rootCert.fingerprint256),
    );
    expect(parsed.foreignRoots.map((root) => root.trustDomain)).toEqual(['SPIFFE://example.org', 'spiffe://Example.org', 'partner.test']);
  });

  it('refuses a bundle.pem with no root for the own trust domain', () => {
    const record = { 'svid.pem': svid.chainPem, 'svid_key.pem': svid.keyPem, 'bundle.pem': fedCa.rootPem };
    expectFailure(() => parseCredentialFiles(files(record)), 'invalid', /bundle\.pem holds no authority for example\.org: .*\(partner\.test\)/);
  });

  it('prefers per-trust-domain bundle files to bundle.pem when the folder has them', () => {
    const record = {
      'svid.pem': svid.chainPem,
      'svid_key.pem': svid.keyPem,
      'bundle.pem': otherCa.rootPem + fedCa.rootPem,
      'example.org.spiffe-trust-bundle.pem': ca.rootPem,
      'partner.test.spiffe-trust-bundle.pem': fedCa.rootPem,
    };
    const parsed = parseCredentialFiles(files(record), { layout: 'split' });
    expect(parsed.layout).toBe('split');
    expect(parsed.sources).toEqual(['svid.pem', 'svid_key.pem', 'example.org.spiffe-trust-bundle.pem', 'partner.test.spiffe-trust-bundle.pem']);
    expect(parsed.material.bundles.get('example.org')!.authorities.map((cert) => cert.fingerprint256)).toEqual([ca.rootCert.fingerprint256]);
    expect(parsed.material.bundles.get('partner.test')!.authorities.map((cert) => cert.fingerprint256)).toEqual([fedCa.rootCert.fingerprint256]);
    expect(parsed.foreignRoots).toEqual([]);

    const { 'bundle.pem': _unused, ...withoutBundle } = record;
    expect(parseCredentialFiles(files(withoutBundle)).material.bundles.trustDomains().map((td) => td.name)).toEqual(['example.org', 'partner.test']);
    const { 'example.org.spiffe-trust-bundle.pem': _own, ...withoutOwn } = record;
    expectFailure(() => parseCredentialFiles(files(withoutOwn)), 'invalid', /no trust bundle for the SVID's own trust domain "example\.org"/);
  });

  it('uses configured file names', () => {
    const options: CredentialFilesOptions = { files: { svid: 'tls.crt', key: 'tls.key', bundle: 'ca.crt' } };
    const record = { 'tls.crt': svid.chainPem, 'tls.key': svid.keyPem, 'ca.crt': ca.rootPem };
    expect(parseCredentialFiles(files(record), options).material.svid.serialNumber).toBe(svid.cert.serialNumber);
    expect(selectCredentialFiles(['tls.crt', 'tls.key', 'ca.crt', 'svid.pem'], options).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
  });

  it('follows a forced layout', () => {
    const all = credentialFiles(svid, { trustDomain: 'example.org', bundlePem: ca.rootPem });
    all['svid.pem'] = other.chainPem;
    all['svid_key.pem'] = other.keyPem;
    all['bundle.pem'] = otherCa.rootPem;
    expect(parseCredentialFiles(files(all), { layout: 'split' }).material.svid.serialNumber).toBe(other.cert.serialNumber);
    expect(parseCredentialFiles(files(all), { layout: 'credential-bundle' }).material.svid.serialNumber).toBe(
      svid.cert.serialNumber,
    );
    const splitOnly = { 'svid.pem': svid.chainPem, 'svid_key.pem': svid.keyPem, 'bundle.pem': ca.rootPem };
    expectFailure(() => parseCredentialFiles(files(splitOnly), { layout: 'credential-bundle' }), 'missing', /no credential bundle/);
  });
});

describe('file selection and names', () => {
  it('selects only the files a layout needs', () => {
    const names = [
      'credential-bundle.pem',
      'example.org.spiffe-trust-bundle.pem',
      'partner.test.spiffe-trust-bundle.pem',
      'svid.pem',
      'svid_key.pem',
      'bundle.pem',
      'identity.json',
      'jwt-svid.token',
    ];
    expect(selectCredentialFiles(names).sort()).toEqual(names.filter((n) => !['identity.json', 'jwt-svid.token'].includes(n)).sort());
    // Per-trust-domain bundles too: they take precedence over bundle.pem for trust anchors.
    expect(selectCredentialFiles(names, { layout: 'split' }).sort()).toEqual([
      'bundle.pem',
      'example.org.spiffe-trust-bundle.pem',
      'partner.test.spiffe-trust-bundle.pem',
      'svid.pem',
      'svid_key.pem',
    ]);
    expect(selectCredentialFiles(names, { layout: 'credential-bundle' }).sort()).toEqual([
      'credential-bundle.pem',
      'example.org.spiffe-trust-bundle.pem',
      'partner.test.spiffe-trust-bundle.pem',
    ]);
  });

  it('maps trust bundle file names to trust domains', () => {
    expect(trustDomainOfBundleFile('example.org.spiffe-trust-bundle.pem')?.name).toBe('example.org');
    expect(trustDomainOfBundleFile('UPPER.spiffe-trust-bundle.pem')).toBeUndefined();
    expect(trustDomainOfBundleFile('.spiffe-trust-bundle.pem')).toBeUndefined();
    expect(trustDomainOfBundleFile('bundle.pem')).toBeUndefined();
  });

  it.each([
    [{ svid: '../svid.pem' }, /files\.svid must be a plain file name/],
    [{ key: '.hidden' }, /files\.key must be a plain file name/],
    [{ bundle: '' }, /files\.bundle must be a plain file name/],
    [{ key: 'svid.pem' }, /three different names/],
  ])('rejects split names %j', (names, pattern) => {
    expectFailure(() => resolveSplitFileNames(names), 'config', pattern);
  });
});

describe('locateCredentialFolder', () => {
  it('prefers the explicit folder, then SPIFFE_CREDENTIAL_FOLDER', () => {
    expect(locateCredentialFolder('/run/creds', { SPIFFE_CREDENTIAL_FOLDER: '/env/creds' }, 'filesource')).toBe('/run/creds');
    expect(locateCredentialFolder(undefined, { SPIFFE_CREDENTIAL_FOLDER: '/env/creds' }, 'filesource')).toBe('/env/creds');
  });

  it('has no default folder', () => {
    expectFailure(() => locateCredentialFolder(undefined, {}, 'filesource'), 'config', /set SPIFFE_CREDENTIAL_FOLDER \(there is no default folder\)/);
    expectFailure(() => locateCredentialFolder(undefined, { SPIFFE_CREDENTIAL_FOLDER: ' ' }, 'filesource'), 'config', /no credential folder/);
    expectFailure(() => locateCredentialFolder('', {}, 'filesource'), 'config', /non-empty path/);
  });
});
