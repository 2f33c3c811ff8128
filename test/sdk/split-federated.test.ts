import { rm } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { authorizeMemberOf } from '../../sdk/src/authorize/authorizer.js';
import { SourceError } from '../../sdk/src/source/errors.js';
import { FileSource, type FileSourceOptions, type FileSourceWarning } from '../../sdk/src/source/file-source.js';
import { verifyPeer } from '../../sdk/src/tls/verify-peer.js';
import { CredentialFolder, credentialFiles, type CredentialFilesSpec, type WriteMode } from '../helpers/credential-folder.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';

/**
 * #13 finding 4: with `csi.spire.io/bundle-include-federated: "true"` the driver's split bundle.pem
 * holds example.org's roots and partner.org's. A reader that takes every root in it as example.org's
 * lets partner.org's CA mint `spiffe://example.org/...` identities that authorizeMemberOf accepts.
 */

const TD = 'example.org';
const PARTNER = 'partner.org';

let ca: TestCa;
let partnerCa: TestCa;
let staleCa: TestCa;
/** A CA of example.org that predates SPIFFE URI SANs on CA certificates (or a non-SPIRE upstream). */
let plainCa: TestCa;
let svid: MintedSvid;
let peer: MintedSvid;
let forged: MintedSvid;
let partnerPeer: MintedSvid;

const roots: string[] = [];
const sources: FileSource[] = [];

beforeAll(async () => {
  [ca, partnerCa, staleCa, plainCa] = await Promise.all([
    TestCa.create(TD),
    TestCa.create(PARTNER),
    TestCa.create(TD),
    TestCa.create(TD, { uris: [] }),
  ]);
  [svid, peer, forged, partnerPeer] = await Promise.all([
    ca.mint(`spiffe://${TD}/workload`),
    ca.mint(`spiffe://${TD}/peer`),
    // partner.org's CA signing an identity of example.org: what finding 4 is about.
    partnerCa.mint(`spiffe://${TD}/x`),
    partnerCa.mint(`spiffe://${PARTNER}/api`),
  ]);
});

afterEach(async () => {
  await Promise.all(sources.splice(0).map((source) => source.close()));
  await Promise.all(roots.splice(0).map((root) => rm(root, { recursive: true, force: true })));
});

async function newFolder(mode: WriteMode = 'atomic'): Promise<CredentialFolder> {
  const { folder, root } = await CredentialFolder.create(mode);
  roots.push(root);
  return folder;
}

/** The files the driver writes for a volume federating with partner.org, bundle-include-federated on. */
function federatedFiles(extra: Partial<CredentialFilesSpec> = {}): Record<string, string> {
  return credentialFiles(svid, {
    trustDomain: TD,
    bundlePem: ca.rootPem,
    federated: { [PARTNER]: partnerCa.rootPem },
    bundleIncludeFederated: true,
    ...extra,
  });
}

function open(folder: string, options: FileSourceOptions): { source: FileSource; warnings: FileSourceWarning[]; errors: SourceError[] } {
  const source = new FileSource(folder, { watch: false, recheckIntervalMs: 600_000, ...options });
  sources.push(source);
  const warnings: FileSourceWarning[] = [];
  const errors: SourceError[] = [];
  source.on('warning', (w) => warnings.push(w));
  source.on('error', (e) => errors.push(e));
  return { source, warnings, errors };
}

function fingerprints(source: FileSource, td: string): string[] {
  return source.getX509Bundles().get(td)?.authorities.map((cert) => cert.fingerprint256) ?? [];
}

describe('split layout with bundle-include-federated', () => {
  it('a driver folder: the partner CA cannot mint example.org identities through a split-layout FileSource', async () => {
    const folder = await newFolder();
    await folder.write(federatedFiles());
    const { source } = open(folder.path, { layout: 'split' });
    await source.ready(10_000);

    expect(() => verifyPeer(forged.chainDer, source, authorizeMemberOf(TD))).toThrow();
    // Nothing else changes: example.org peers verify, and partner.org peers verify against partner.org.
    expect(verifyPeer(peer.chainDer, source, authorizeMemberOf(TD)).id.toString()).toBe(`spiffe://${TD}/peer`);
    expect(verifyPeer(partnerPeer.chainDer, source, authorizeMemberOf(PARTNER)).id.toString()).toBe(`spiffe://${PARTNER}/api`);
    expect(fingerprints(source, TD)).toEqual([ca.rootCert.fingerprint256]);
  });

  it.each(['split', 'auto'] as const)(
    'split files alone (layout %s): roots naming another trust domain are dropped with a warning',
    async (layout) => {
      const folder = await newFolder();
      await folder.write(federatedFiles({ credentialBundle: false }));
      const { source, warnings } = open(folder.path, { layout });
      await source.ready(10_000);

      expect(() => verifyPeer(forged.chainDer, source, authorizeMemberOf(TD))).toThrow();
      expect(verifyPeer(peer.chainDer, source, authorizeMemberOf(TD)).id.toString()).toBe(`spiffe://${TD}/peer`);
      expect(fingerprints(source, TD)).toEqual([ca.rootCert.fingerprint256]);
      expect(source.getX509Bundles().trustDomains().map((td) => td.name)).toEqual([TD]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({
        kind: 'foreign-root',
        folder: folder.path,
        file: 'bundle.pem',
        trustDomain: PARTNER,
        spiffeId: `spiffe://${TD}/workload`,
        serialNumber: svid.cert.serialNumber,
      });
      expect(warnings[0]!.message).toMatch(/^filesource: bundle\.pem: .*spiffe:\/\/partner\.org.*not an authority for example\.org/);

      // The same content read again is not news.
      await source.refresh();
      expect(warnings).toHaveLength(1);
    },
  );

  it('keeps bundle.pem roots without a SPIFFE URI SAN as the own trust domain, as before', async () => {
    const folder = await newFolder('plain');
    const legacy = await plainCa.mint(`spiffe://${TD}/workload`);
    await folder.write(credentialFiles(legacy, { trustDomain: TD, bundlePem: plainCa.rootPem, credentialBundle: false }));
    const { source, warnings } = open(folder.path, { layout: 'split' });
    await source.ready(10_000);
    expect(fingerprints(source, TD)).toEqual([plainCa.rootCert.fingerprint256]);
    expect(warnings).toEqual([]);
  });

  it('refuses a bundle.pem whose every root names another trust domain', async () => {
    const folder = await newFolder();
    await folder.write({ 'svid.pem': svid.chainPem, 'svid_key.pem': svid.keyPem, 'bundle.pem': partnerCa.rootPem });
    const { source, errors } = open(folder.path, { layout: 'split' });
    await source.refresh();
    expect(() => source.current()).toThrow(SourceError);
    expect(errors.map((e) => e.kind)).toEqual(['invalid']);
    expect(errors[0]!.message).toMatch(/bundle\.pem holds no authority for example\.org.*partner\.org/);
  });
});

describe('split layout next to per-trust-domain bundle files', () => {
  it('takes the trust anchors from <td>.spiffe-trust-bundle.pem, not from bundle.pem', async () => {
    const folder = await newFolder();
    // bundle.pem from another CA generation: if it were used, staleCa's leaves would verify.
    const record = federatedFiles();
    record['bundle.pem'] = staleCa.rootPem;
    await folder.write(record);
    const { source, warnings } = open(folder.path, { layout: 'split' });
    await source.ready(10_000);

    expect(fingerprints(source, TD)).toEqual([ca.rootCert.fingerprint256]);
    expect(fingerprints(source, PARTNER)).toEqual([partnerCa.rootCert.fingerprint256]);
    const staleLeaf = await staleCa.mint(`spiffe://${TD}/stale`);
    expect(() => verifyPeer(staleLeaf.chainDer, source, authorizeMemberOf(TD))).toThrow();
    expect(verifyPeer(partnerPeer.chainDer, source, authorizeMemberOf(PARTNER)).id.toString()).toBe(`spiffe://${PARTNER}/api`);
    expect(warnings).toEqual([]);
  });

  it('needs no bundle.pem then, but does need the own trust domain file', async () => {
    const folder = await newFolder();
    const record = federatedFiles({ credentialBundle: false });
    delete record['bundle.pem'];
    record[`${TD}.spiffe-trust-bundle.pem`] = ca.rootPem;
    record[`${PARTNER}.spiffe-trust-bundle.pem`] = partnerCa.rootPem;
    await folder.write(record);
    const { source } = open(folder.path, { layout: 'split' });
    expect((await source.ready(10_000)).svid.serialNumber).toBe(svid.cert.serialNumber);
    expect(source.getX509Bundles().trustDomains().map((td) => td.name).sort()).toEqual([TD, PARTNER].sort());

    const folder2 = await newFolder();
    const onlyPartner = federatedFiles({ credentialBundle: false });
    onlyPartner[`${PARTNER}.spiffe-trust-bundle.pem`] = partnerCa.rootPem;
    await folder2.write(onlyPartner);
    const second = open(folder2.path, { layout: 'split' });
    await second.source.refresh();
    expect(second.errors.map((e) => e.kind)).toEqual(['invalid']);
    expect(second.errors[0]!.message).toMatch(/no trust bundle for the SVID's own trust domain "example\.org"/);
  });
});
