import { renameSync, rmSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../sdk/src/logger.js';
import { SourceError, type SourceErrorKind } from '../../sdk/src/source/errors.js';
import { FileSource, type FileSourceOptions, type FileSourceWarning } from '../../sdk/src/source/file-source.js';
import type { X509Material } from '../../sdk/src/source/x509-source.js';
import { TrustDomain } from '../../sdk/src/spiffeid/trust-domain.js';
import { CredentialFolder, credentialFiles, type WriteMode } from '../helpers/credential-folder.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';

const TD = 'example.org';
let ca: TestCa;
let otherCa: TestCa;
let fedCa: TestCa;

const roots: string[] = [];
const sources: FileSource[] = [];

beforeAll(async () => {
  ca = await TestCa.create(TD);
  otherCa = await TestCa.create(TD);
  fedCa = await TestCa.create('partner.test');
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

function mint(options: Parameters<TestCa['mint']>[1] = {}): Promise<MintedSvid> {
  return ca.mint(`spiffe://${TD}/workload`, options);
}

function files(svid: MintedSvid, extra: Partial<Parameters<typeof credentialFiles>[1]> = {}): Record<string, string> {
  return credentialFiles(svid, { trustDomain: TD, bundlePem: ca.rootPem, ...extra });
}

interface Recorded {
  updates: X509Material[];
  errors: SourceError[];
  warnings: FileSourceWarning[];
}

/**
 * A FileSource with fast timings (unless overridden), recording its events, closed after the test.
 * Tests that wait on the source's own timers pass a FakeClock (and no watch, so every read is one
 * the test caused); tests that wait on real filesystem events keep the system clock.
 */
function open(folder: string | undefined, options: FileSourceOptions = {}, listenErrors = true): { source: FileSource } & Recorded {
  const source = new FileSource(folder, { debounceMs: 10, recheckIntervalMs: 600_000, readRetryDelayMs: 5, ...options });
  sources.push(source);
  const recorded: Recorded = { updates: [], errors: [], warnings: [] };
  source.on('update', (m) => recorded.updates.push(m));
  if (listenErrors) source.on('error', (e) => recorded.errors.push(e));
  source.on('warning', (w) => recorded.warnings.push(w));
  return { source, ...recorded };
}

function serialOf(source: FileSource): string {
  return source.getX509Svid().serialNumber;
}

function waitForSerial(source: FileSource, svid: MintedSvid, message: string): Promise<unknown> {
  return waitFor(() => serialOf(source) === svid.cert.serialNumber, { message });
}

function recordingLogger(): Logger & { entries: { level: string; obj: object; msg?: string }[] } {
  const entries: { level: string; obj: object; msg?: string }[] = [];
  const log = (level: string) => (obj: object, msg?: string) => entries.push({ level, obj, msg });
  return { entries, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

describe('FileSource: loading', () => {
  it('loads the driver layout and emits the first update', async () => {
    const folder = await newFolder();
    const svid = await mint();
    await folder.write(files(svid, { federated: { 'partner.test': fedCa.rootPem } }));
    const { source, updates } = open(folder.path);
    const material = await source.ready(10_000);
    expect(material.svid.serialNumber).toBe(svid.cert.serialNumber);
    expect(source.current()).toBe(material);
    expect(source.getX509Svid().id.toString()).toBe(`spiffe://${TD}/workload`);
    expect(source.getX509Bundles().trustDomains().map((td) => td.name).sort()).toEqual([TD, 'partner.test']);
    expect(source.getX509BundleForTrustDomain(TrustDomain.parse(TD))?.authorities[0]!.raw.equals(ca.rootDer)).toBe(true);
    expect(updates).toEqual([material]);
    expect(source.folder).toBe(folder.path);
  });

  it('accepts the credential-bundle.private-key.pem spelling', async () => {
    const folder = await newFolder();
    const svid = await mint();
    await folder.write(files(svid, { split: false, credentialBundleName: 'credential-bundle.private-key.pem' }));
    const { source } = open(folder.path);
    expect((await source.ready(10_000)).svid.serialNumber).toBe(svid.cert.serialNumber);
  });

  it('reads split files in plain folders', async () => {
    const folder = await newFolder('plain');
    const svid = await mint();
    await folder.write(files(svid, { credentialBundle: false }));
    const { source } = open(folder.path);
    expect((await source.ready(10_000)).svid.serialNumber).toBe(svid.cert.serialNumber);
  });

  it('finds the folder through SPIFFE_CREDENTIAL_FOLDER and has no default', async () => {
    const folder = await newFolder();
    const svid = await mint();
    await folder.write(files(svid));
    const { source } = open(undefined, { env: { SPIFFE_CREDENTIAL_FOLDER: folder.path } });
    expect((await source.ready(10_000)).svid.serialNumber).toBe(svid.cert.serialNumber);
    expect(() => new FileSource(undefined, { env: {} })).toThrow(/^filesource: no credential folder: .*SPIFFE_CREDENTIAL_FOLDER/);
  });

  it('rejects bad options at construction', () => {
    expect(() => new FileSource('/x', { debounceMs: -1 })).toThrow('filesource: debounceMs must be a finite number >= 0, got -1');
    expect(() => new FileSource('/x', { watch: false, recheckIntervalMs: 0 })).toThrow(/rotations are never seen/);
    expect(() => new FileSource('/x', { files: { key: '../key.pem' } })).toThrow(/files\.key must be a plain file name/);
  });

  it('throws a clear error when material is requested before ready', async () => {
    const folder = await newFolder();
    const { source } = open(folder.path);
    expect(() => source.getX509Svid()).toThrow(`filesource: no credentials loaded yet from ${folder.path}; await ready() first`);
    expect(() => source.getX509Bundles()).toThrow(SourceError);
    expect(source.getX509BundleForTrustDomain(TrustDomain.parse(TD))).toBeUndefined();
  });

  it('ready() times out naming the folder and the last problem', async () => {
    const folder = await newFolder();
    await writeFile(join(folder.path, 'unrelated.txt'), 'x');
    const clock = new FakeClock(Date.now());
    const { source } = open(folder.path, { watch: false, clock });
    const pending = source.ready(300).catch((e: unknown) => e);
    await clock.advance(299);
    expect(clock.pendingDelays()).toContain(1);
    await clock.advance(1);
    const err = (await pending) as SourceError;
    expect(err).toBeInstanceOf(SourceError);
    expect(err.kind).toBe('timeout');
    expect(err.message).toMatch(
      new RegExp(`^filesource: no valid credentials in ${folder.path} after 300 ms \\(last problem: no credential files \\(expected credential-bundle\\.private-key\\.x509\\.pem or credential-bundle\\.private-key\\.pem or credential-bundle\\.pem`),
    );
  });

  it('ready() on a missing folder says it does not exist', async () => {
    const folder = await newFolder();
    await folder.remove();
    const clock = new FakeClock(Date.now());
    const { source } = open(folder.path, { watch: false, clock });
    const pending = source.ready(300).catch((e: unknown) => e);
    await clock.advance(300);
    const err = (await pending) as SourceError;
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain(`credential folder ${folder.path} does not exist`);
  });

  it('becomes ready when credentials appear after start', async () => {
    const folder = await newFolder();
    const { source } = open(folder.path);
    const ready = source.ready(10_000);
    const svid = await mint();
    await folder.write(files(svid));
    expect((await ready).svid.serialNumber).toBe(svid.cert.serialNumber);
  });
});

describe('FileSource: rotation', () => {
  it('picks up a ..data rotation', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const { source, updates } = open(folder.path);
    await source.ready(10_000);
    const next = await mint();
    await folder.write(files(next));
    await waitForSerial(source, next, 'the rotated SVID');
    expect(updates.map((m) => m.svid.serialNumber).at(-1)).toBe(next.cert.serialNumber);
  });

  it('picks up plain files replaced in place', async () => {
    const folder = await newFolder('plain');
    await folder.write(files(await mint()));
    const { source } = open(folder.path);
    await source.ready(10_000);
    const next = await mint();
    await folder.write(files(next));
    await waitForSerial(source, next, 'the replaced plain files');
  });

  it('survives the folder being removed and recreated (watch, not re-check)', async () => {
    const folder = await newFolder();
    const first = await mint();
    await folder.write(files(first));
    const { source, errors } = open(folder.path);
    await source.ready(10_000);
    await folder.remove();
    await waitFor(() => errors.some((e) => e.kind === 'missing'), { message: 'the missing folder to be reported' });
    expect(serialOf(source)).toBe(first.cert.serialNumber);
    const next = await mint();
    await folder.write(files(next));
    await waitForSerial(source, next, 'the SVID in the recreated folder');
    // And the watch on the new directory keeps working.
    const third = await mint();
    await folder.write(files(third));
    await waitForSerial(source, third, 'a rotation inside the recreated folder');
  });

  it('follows a folder replaced by rename', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const { source } = open(folder.path);
    await source.ready(10_000);
    const staged = new CredentialFolder(`${folder.path}.staged`, 'atomic');
    const next = await mint();
    await staged.write(files(next));
    // Back to back, as a tool swapping directories would: the watch sees no gap to react to.
    rmSync(folder.path, { recursive: true });
    renameSync(staged.path, folder.path);
    await waitForSerial(source, next, 'the SVID in the renamed-in folder');
    const third = await mint();
    await folder.write(files(third));
    await waitForSerial(source, third, 'a rotation inside the renamed-in folder');
  });

  it('works with polling', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const { source } = open(folder.path, { usePolling: true, pollIntervalMs: 50 });
    await source.ready(10_000);
    const next = await mint();
    await folder.write(files(next));
    await waitForSerial(source, next, 'the rotation seen by polling');
  });

  it('the periodic re-check picks up changes without any watch', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const clock = new FakeClock(Date.now());
    const { source } = open(folder.path, { watch: false, recheckIntervalMs: 50, clock });
    await source.ready(10_000);
    const next = await mint();
    await folder.write(files(next));
    await clock.advance(49);
    expect(serialOf(source)).not.toBe(next.cert.serialNumber);
    await clock.advance(1);
    expect(serialOf(source)).toBe(next.cert.serialNumber);
  });

  it('follows a plain file deleted and rewritten under the same name, again and again', async () => {
    // chokidar may swallow an unlink+add of one name; the raw fs events still trigger a re-read.
    const folder = await newFolder('plain');
    await folder.write(files(await mint(), { split: false }));
    const { source } = open(folder.path);
    await source.ready(10_000);
    for (let i = 0; i < 5; i++) {
      const next = await mint();
      await folder.writeRaw('credential-bundle.pem', next.keyPem + next.chainPem);
      await waitForSerial(source, next, `rewrite ${i}`);
    }
  });

  it('retries a failed read without any event (nothing loaded yet, no watch)', async () => {
    const folder = await newFolder();
    const clock = new FakeClock(Date.now());
    const { source, errors } = open(folder.path, { watch: false, recheckIntervalMs: 600_000, clock });
    const ready = source.ready(10_000);
    // The empty folder reads as plain files: re-read a few times (5 ms apart), then reported.
    await clock.advance(50);
    expect(errors.map((e) => e.kind)).toEqual(['missing']);
    const svid = await mint();
    await folder.write(files(svid));
    // The first retry after a failure comes 1 s later, with no event and long before the re-check.
    await clock.advance(1_000);
    expect((await ready).svid.serialNumber).toBe(svid.cert.serialNumber);
  });

  it('drops a trust domain whose bundle file disappears (de-federation)', async () => {
    const folder = await newFolder();
    const svid = await mint();
    await folder.write(files(svid, { federated: { 'partner.test': fedCa.rootPem } }));
    const { source } = open(folder.path);
    await source.ready(10_000);
    expect(source.getX509Bundles().has('partner.test')).toBe(true);
    await folder.write(files(svid));
    await waitFor(() => !source.getX509Bundles().has('partner.test'), { message: 'partner.test to be removed' });
    expect(source.getX509BundleForTrustDomain(TrustDomain.parse('partner.test'))).toBeUndefined();
    expect(source.getX509Bundles().has(TD)).toBe(true);
  });

  it('does not emit an update for byte-identical content', async () => {
    const folder = await newFolder();
    const svid = await mint();
    await folder.write(files(svid));
    const { source, updates } = open(folder.path);
    await source.ready(10_000);
    await folder.write(files(svid)); // new payload directory, same bytes
    await source.refresh();
    expect(updates).toHaveLength(1);
    const next = await mint();
    await folder.write(files(next));
    await source.refresh();
    expect(updates.map((m) => m.svid.serialNumber)).toEqual([svid.cert.serialNumber, next.cert.serialNumber]);
  });
});

describe('FileSource: invalid updates never replace good material', () => {
  const cases: [string, () => Promise<Record<string, string>>, SourceErrorKind, RegExp][] = [
    [
      'key-not-matching-leaf',
      async () => {
        const a = await mint();
        const b = await mint();
        return { ...files(a), 'credential-bundle.pem': b.keyPem + a.chainPem };
      },
      'invalid',
      /credential-bundle\.pem: x509svid: private key does not match the leaf certificate/,
    ],
    ['garbage', async () => ({ ...files(await mint()), 'credential-bundle.pem': 'garbage' }), 'invalid', /credential-bundle\.pem: /],
    [
      'expired',
      async () => files(await mint({ notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) })),
      'expired',
      /is not usable at .*: the leaf is expired/,
    ],
    [
      'own-bundle-missing',
      async () => {
        const all = files(await mint());
        delete all[`${TD}.spiffe-trust-bundle.pem`];
        return all;
      },
      'invalid',
      /no trust bundle for the SVID's own trust domain "example\.org"/,
    ],
    ['everything-removed', async () => ({ 'identity.json': '{}' }), 'missing', /no credential files/],
  ];

  it.each(cases)('%s: reported via error, old material kept', async (_name, make, kind, pattern) => {
    const folder = await newFolder();
    const good = await mint();
    await folder.write(files(good));
    const { source, errors, updates } = open(folder.path);
    await source.ready(10_000);
    await folder.write(await make());
    const error = await waitFor(() => errors[0], { message: 'the invalid update to be reported' });
    expect(error.kind).toBe(kind);
    expect(error.message).toMatch(pattern);
    expect(serialOf(source)).toBe(good.cert.serialNumber);
    expect(updates).toHaveLength(1);
    // The same bad content is reported once, not on every re-read.
    await source.refresh();
    expect(errors).toHaveLength(1);
    // A good update afterwards is taken.
    const next = await mint();
    await folder.write(files(next));
    await waitForSerial(source, next, 'the good update after a bad one');
  });

  it('ignores a half-written plain file and takes the completed one', async () => {
    const folder = await newFolder('plain');
    const good = await mint();
    await folder.write(files(good, { split: false }));
    const { source, errors } = open(folder.path);
    await source.ready(10_000);
    const next = await mint();
    const complete = files(next, { split: false });
    const bundle = complete['credential-bundle.pem']!;
    await folder.writeRaw('credential-bundle.pem', bundle.slice(0, Math.floor(bundle.length / 2)));
    await waitFor(() => errors[0], { message: 'the half-written file to be reported' });
    expect(errors[0]!.kind).toBe('invalid');
    expect(serialOf(source)).toBe(good.cert.serialNumber);
    await folder.writeRaw('credential-bundle.pem', bundle);
    await waitForSerial(source, next, 'the completed file');
  });

  it('ignores a half-written payload behind ..data', async () => {
    const folder = await newFolder();
    const good = await mint();
    await folder.write(files(good));
    const { source, errors } = open(folder.path);
    await source.ready(10_000);
    const next = files(await mint());
    next['credential-bundle.pem'] = next['credential-bundle.pem']!.slice(0, 300);
    await folder.write(next);
    await waitFor(() => errors[0], { message: 'the truncated payload to be reported' });
    expect(serialOf(source)).toBe(good.cert.serialNumber);
  });

  it('without error listeners, logs a warning instead of throwing, and never logs key material', async () => {
    const folder = await newFolder();
    const good = await mint();
    await folder.write(files(good));
    const logger = recordingLogger();
    const { source } = open(folder.path, { logger }, false);
    await source.ready(10_000);
    const bad = await mint();
    await folder.write({ ...files(good), 'credential-bundle.pem': bad.keyPem + good.chainPem });
    const entry = await waitFor(() => logger.entries.find((e) => e.level === 'warn'), { message: 'a warning log' });
    expect(entry.msg).toBe('filesource: ignoring invalid update, keeping current credentials');
    expect(entry.obj).toMatchObject({ folder: folder.path, kind: 'invalid' });
    expect(serialOf(source)).toBe(good.cert.serialNumber);
    const logged = JSON.stringify(logger.entries);
    for (const key of [good.keyPem, bad.keyPem]) expect(logged).not.toContain(key.split('\n')[1]!.slice(0, 32));
  });

  it('keeps working when an update listener throws', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const logger = recordingLogger();
    const { source } = open(folder.path, { logger });
    source.on('update', () => {
      throw new Error('listener bug');
    });
    await source.ready(10_000);
    const next = await mint();
    await folder.write(files(next));
    await waitForSerial(source, next, 'the rotation despite a throwing listener');
    expect(logger.entries.some((e) => e.level === 'error' && e.msg === "filesource: an 'update' listener threw")).toBe(true);
  });
});

describe('FileSource: expiry warnings', () => {
  it('warns once when the SVID nears expiry, and once when it expired, on its own timer', async () => {
    const folder = await newFolder();
    const start = Date.now();
    // 60 min lifetime; the default warning window is the last third (20 min).
    const svid = await mint({ notBefore: new Date(start - 600_000), notAfter: new Date(start + 3_000_000) });
    await folder.write(files(svid));
    const clock = new FakeClock(start);
    const { source, warnings } = open(folder.path, { watch: false, clock });
    await source.ready(10_000);
    await source.refresh();
    expect(warnings).toEqual([]);

    // 41 min into the lifetime, 19 min left: no read needed, the expiry check fires by itself.
    await clock.advance(1_900_000);
    expect(warnings.map((w) => w.kind)).toEqual(['expiring']);
    expect(warnings[0]).toMatchObject({ folder: folder.path, spiffeId: `spiffe://${TD}/workload`, serialNumber: svid.cert.serialNumber });
    expect(warnings[0]!.message).toMatch(/^filesource: X509-SVID spiffe:\/\/example\.org\/workload .* expires at /);
    await source.refresh();
    expect(warnings).toHaveLength(1);

    await clock.advance(1_101_000);
    expect(warnings.map((w) => w.kind)).toEqual(['expiring', 'expired']);
    await source.refresh();
    await clock.advance(600_000);
    expect(warnings).toHaveLength(2);
    // The expired SVID is still served: nothing better exists.
    expect(serialOf(source)).toBe(svid.cert.serialNumber);
  });

  it('a clock jump past the warning point warns at the next read', async () => {
    const folder = await newFolder();
    const start = Date.now();
    const svid = await mint({ notBefore: new Date(start - 600_000), notAfter: new Date(start + 3_000_000) });
    await folder.write(files(svid));
    const clock = new FakeClock(start);
    const { source, warnings } = open(folder.path, { watch: false, clock });
    await source.ready(10_000);
    clock.set(new Date(start + 1_900_000));
    await source.refresh();
    expect(warnings.map((w) => w.kind)).toEqual(['expiring']);
  });

  it('honours expiryWarningMs', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const clock = new FakeClock(Date.now());
    const { source, warnings } = open(folder.path, { expiryWarningMs: 2 * 3_600_000, watch: false, clock });
    await source.ready(10_000);
    await clock.advance(0);
    expect(warnings.map((w) => w.kind)).toEqual(['expiring']);
  });

  it('refuses an SVID that is not valid yet by the injected clock', async () => {
    const folder = await newFolder();
    const svid = await mint();
    await folder.write(files(svid));
    const clock = new FakeClock(new Date(svid.cert.validFrom).getTime() - 60_000);
    const { source, errors } = open(folder.path, { watch: false, clock });
    await source.refresh();
    expect(errors.map((e) => e.kind)).toEqual(['expired']);
    expect(errors[0]!.message).toMatch(/the leaf is not valid yet/);
    // Once the clock reaches notBefore, the failure backoff's next read takes it.
    clock.set(new Date(svid.cert.validFrom));
    await clock.advance(1_000);
    expect(serialOf(source)).toBe(svid.cert.serialNumber);
  });
});

describe('FileSource: close', () => {
  it('is idempotent and rejects pending ready() calls', async () => {
    const folder = await newFolder();
    const { source } = open(folder.path);
    const pending = source.ready(10_000);
    await Promise.all([source.close(), source.close()]);
    await source.close();
    await expect(pending).rejects.toMatchObject({ kind: 'closed' });
    await expect(source.ready()).rejects.toThrow(`filesource: closed before credentials were loaded from ${folder.path}`);
  });

  it('stops following changes after close but keeps the last material readable', async () => {
    const folder = await newFolder();
    const first = await mint();
    await folder.write(files(first));
    const { source, updates } = open(folder.path);
    await source.ready(10_000);
    await source.close();
    await folder.write(files(await mint()));
    await source.refresh();
    expect(updates).toHaveLength(1);
    expect(serialOf(source)).toBe(first.cert.serialNumber);
  });

  it('closes while the folder is missing', async () => {
    const folder = await newFolder();
    await folder.remove();
    const { source } = open(join(folder.path, 'deeper'));
    await mkdir(folder.path);
    await source.close();
  });
});

describe('FileSource: rotation with another CA', () => {
  it('takes a new SVID from a different CA with its new bundle', async () => {
    const folder = await newFolder();
    await folder.write(files(await mint()));
    const { source } = open(folder.path);
    await source.ready(10_000);
    const next = await otherCa.mint(`spiffe://${TD}/workload`);
    await folder.write(credentialFiles(next, { trustDomain: TD, bundlePem: otherCa.rootPem }));
    await waitForSerial(source, next, 'the SVID from the new CA');
    expect(source.getX509Bundles().get(TD)!.authorities[0]!.raw.equals(otherCa.rootDer)).toBe(true);
  });
});
