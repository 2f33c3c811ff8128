/**
 * Writes credential folders for FileSource tests, either the way the driver (and kubelet's
 * AtomicWriter) does, or as plain files replaced one by one, the way naive tools do.
 *
 * Atomic mode: every write is a new `..<timestamp>.<random>` payload directory, a `..data_tmp`
 * symlink renamed over `..data`, visible names as symlinks into `..data/`, stale links removed and
 * old payload directories deleted. Plain mode: files written in place (non-atomically), with files
 * not in the new set removed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MintedSvid } from './test-ca.js';

export type FolderFiles = Readonly<Record<string, string | Buffer>>;
export type WriteMode = 'atomic' | 'plain';

const DATA = '..data';
const DATA_TMP = '..data_tmp';

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** A unique payload directory name in the driver's format. */
export function payloadDirName(now = new Date()): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  const ts = `${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(
    now.getUTCMinutes(),
  )}_${pad(now.getUTCSeconds())}`;
  return `..${ts}.${randomBytes(8).toString('hex')}`;
}

export class CredentialFolder {
  constructor(
    readonly path: string,
    readonly mode: WriteMode = 'atomic',
  ) {}

  /** A new empty folder under a fresh temp directory (so the folder itself can be removed). */
  static async create(mode: WriteMode = 'atomic', name = 'creds'): Promise<{ folder: CredentialFolder; root: string }> {
    const root = await mkdtemp(join(tmpdir(), 'spire-csi-fs-'));
    const path = join(root, name);
    await mkdir(path);
    return { folder: new CredentialFolder(path, mode), root };
  }

  /** Makes the folder hold exactly `files` (visible names). */
  async write(files: FolderFiles): Promise<void> {
    await mkdir(this.path, { recursive: true });
    if (this.mode === 'plain') {
      for (const [name, content] of Object.entries(files)) await writeFile(join(this.path, name), content);
      for (const entry of await readdir(this.path)) {
        if (!entry.startsWith('.') && !(entry in files)) await rm(join(this.path, entry), { force: true });
      }
      return;
    }
    const previous = await readlink(join(this.path, DATA)).catch((err: unknown) => {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    });
    const dir = payloadDirName();
    await mkdir(join(this.path, dir));
    for (const [name, content] of Object.entries(files)) await writeFile(join(this.path, dir, name), content);
    await rm(join(this.path, DATA_TMP), { force: true });
    await symlink(dir, join(this.path, DATA_TMP));
    await rename(join(this.path, DATA_TMP), join(this.path, DATA));
    for (const name of Object.keys(files)) {
      const link = join(this.path, name);
      const wanted = `${DATA}/${name}`;
      const current = await readlink(link).catch(() => undefined);
      if (current === wanted) continue;
      await rm(link, { force: true });
      await symlink(wanted, link);
    }
    for (const entry of await readdir(this.path)) {
      if (entry.startsWith('..')) {
        if (entry !== DATA && entry !== dir && (entry === previous || /^\.\.\d{4}_/.test(entry))) {
          await rm(join(this.path, entry), { recursive: true, force: true });
        }
      } else if (!(entry in files) && (await lstat(join(this.path, entry))).isSymbolicLink()) {
        await unlink(join(this.path, entry));
      }
    }
  }

  /** Writes one visible file in place, bypassing `..data` (to simulate a half-written file). */
  async writeRaw(name: string, content: string | Buffer): Promise<void> {
    await rm(join(this.path, name), { force: true });
    await writeFile(join(this.path, name), content);
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}

export interface CredentialFilesSpec {
  /** The SVID's own trust domain name (bundle file name prefix). */
  readonly trustDomain: string;
  /** Root PEM(s) of the own trust domain. */
  readonly bundlePem: string;
  /** Federated trust domain name → root PEM(s). */
  readonly federated?: Readonly<Record<string, string>>;
  /**
   * Which spelling of the credential bundle to write. Default `credential-bundle.pem`, the driver's
   * `layout-names: "2026-02"` (its default is `credential-bundle.private-key.x509.pem`).
   */
  readonly credentialBundleName?: 'credential-bundle.pem' | 'credential-bundle.private-key.pem' | 'credential-bundle.private-key.x509.pem';
  /** Which spelling of the trust bundle suffix to write. Default `.spiffe-trust-bundle.pem`, as above. */
  readonly trustBundleSuffix?: '.spiffe-trust-bundle.pem' | '.spiffe-trust-bundle.x509.pem';
  /** Also write svid.pem / svid_key.pem / bundle.pem. Default true, like the driver. */
  readonly split?: boolean;
  /** Write the SPIFFE Filesystem Delivery files. Default true. */
  readonly credentialBundle?: boolean;
  /**
   * bundle.pem holds the own roots and then every federated trust domain's, as the driver writes it
   * with `csi.spire.io/bundle-include-federated: "true"`. Default false.
   */
  readonly bundleIncludeFederated?: boolean;
}

/** The file set the driver writes for one SVID. */
export function credentialFiles(svid: MintedSvid, spec: CredentialFilesSpec): Record<string, string> {
  const files: Record<string, string> = {};
  if (spec.credentialBundle ?? true) {
    files[spec.credentialBundleName ?? 'credential-bundle.pem'] = svid.keyPem + svid.chainPem;
    const suffix = spec.trustBundleSuffix ?? '.spiffe-trust-bundle.pem';
    files[`${spec.trustDomain}${suffix}`] = spec.bundlePem;
    for (const [td, pem] of Object.entries(spec.federated ?? {})) files[`${td}${suffix}`] = pem;
  }
  if (spec.split ?? true) {
    files['svid.pem'] = svid.chainPem;
    files['svid_key.pem'] = svid.keyPem;
    // The driver concatenates own first, then the federated trust domains in name order.
    const federated = Object.entries(spec.federated ?? {}).sort(([a], [b]) => a.localeCompare(b));
    files['bundle.pem'] = spec.bundleIncludeFederated ? [spec.bundlePem, ...federated.map(([, pem]) => pem)].join('') : spec.bundlePem;
  }
  return files;
}

/** A temp directory removed by the returned function; for tests that manage folders by hand. */
export function tempDir(prefix = 'spire-csi-fs-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
