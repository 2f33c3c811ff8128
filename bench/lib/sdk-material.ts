/**
 * Certificates for the SDK benches, minted once per run with the test CA, and a credential-folder
 * writer that reports the instant of its `..data` rename (the moment a reader can first see the
 * new generation), which is where reload latency is measured from.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { TrustDomain } from '@spire-csi/sdk';
import { StaticSource } from '@spire-csi/sdk/source';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { credentialFiles } from '../../test/helpers/credential-folder.js';
import { TestCa, type MintedSvid } from '../../test/helpers/test-ca.js';

export const TRUST_DOMAIN = 'example.org';
export const SERVER_ID = 'spiffe://example.org/bench/server';
export const CLIENT_ID = 'spiffe://example.org/bench/client';

export interface BenchPki {
  readonly ca: TestCa;
  readonly server: MintedSvid;
  readonly client: MintedSvid;
}

export async function mintPki(): Promise<BenchPki> {
  const ca = await TestCa.create(TRUST_DOMAIN);
  return { ca, server: await ca.mint(SERVER_ID), client: await ca.mint(CLIENT_ID) };
}

export function staticSource(svid: Pick<MintedSvid, 'chainPem' | 'keyPem'>, rootPem: string): StaticSource {
  return new StaticSource({
    svid: X509Svid.parse(svid.chainPem, svid.keyPem),
    bundles: new X509BundleSet([X509Bundle.parse(TrustDomain.parse(TRUST_DOMAIN), rootPem)]),
  });
}

/** The files the driver writes for one SVID (both layouts). */
export function folderFiles(svid: MintedSvid, rootPem: string): Record<string, string> {
  return credentialFiles(svid, { trustDomain: TRUST_DOMAIN, bundlePem: rootPem });
}

/**
 * The driver's atomic layout (payload dir, `..data` swap, visible links, old payload removed),
 * without fsync: the benches measure the reader, and tmpfs ignores fsync anyway.
 */
export class TimedFolderWriter {
  private previous: string | undefined;

  constructor(readonly path: string) {}

  /**
   * Returns performance.now() right after `..data` was renamed into place. `beforeSwap` gets the
   * time just before the rename, so a reader that reacts before this call returns is still matched
   * to this write (and latencies measured from it are upper bounds).
   */
  async write(files: Readonly<Record<string, string>>, beforeSwap?: (at: number) => void): Promise<number> {
    await mkdir(this.path, { recursive: true });
    const dir = `..${new Date().toISOString().replace(/[-:T]/g, '_').slice(0, 19)}.${randomBytes(8).toString('hex')}`;
    await mkdir(join(this.path, dir));
    await Promise.all(Object.entries(files).map(([name, content]) => writeFile(join(this.path, dir, name), content)));
    await rm(join(this.path, '..data_tmp'), { force: true });
    await symlink(dir, join(this.path, '..data_tmp'));
    beforeSwap?.(performance.now());
    await rename(join(this.path, '..data_tmp'), join(this.path, '..data'));
    const swappedAt = performance.now();
    for (const name of Object.keys(files)) {
      const link = join(this.path, name);
      if ((await readlink(link).catch(() => undefined)) === `..data/${name}`) continue;
      await rm(link, { force: true });
      await symlink(`..data/${name}`, link);
    }
    if (this.previous !== undefined) await rm(join(this.path, this.previous), { recursive: true, force: true });
    this.previous = dir;
    return swappedAt;
  }

  /** Payload directories present (should stay at one). */
  async payloadDirs(): Promise<number> {
    return (await readdir(this.path)).filter((n) => n.startsWith('..') && n !== '..data' && n !== '..data_tmp').length;
  }
}

/** Node prints serials in upper-case hex; compare without caring how each side spelled it. */
export function sameSerial(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.toUpperCase() === b.toUpperCase();
}

/** The serial of the certificate a server at 127.0.0.1:`port` presents to a fresh handshake. */
export function servedSerial(port: number, options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...options, host: '127.0.0.1', port }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.destroy();
      resolve(serial);
    });
    socket.once('error', reject);
  });
}
