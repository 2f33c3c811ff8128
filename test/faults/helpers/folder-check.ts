/**
 * What "a valid credential folder" means for the fault tests: one snapshot (through `..data`, as
 * the SDK reads it) in which every file belongs to the same generation.
 */
import { X509Certificate } from 'node:crypto';
import { readdir, readlink, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyX509Svid, X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { parseCredentialFiles } from '../../../sdk/src/source/credential-files.js';
import { readSnapshot, type FolderSnapshot } from '../../../sdk/src/source/snapshot.js';

export interface FolderFacts {
  readonly spiffeId: string;
  readonly serial: string;
  readonly payloadDir: string | null;
  /** Certificates in the own trust domain's bundle file. */
  readonly ownRoots: number;
}

export interface FolderExpectation {
  readonly spiffeId?: string;
  /** The time to verify the chain at; default now. */
  readonly at?: Date;
}

export class FolderCheckError extends Error {
  constructor(folder: string, message: string) {
    super(`folder-check: ${folder}: ${message}`);
    this.name = 'FolderCheckError';
  }
}

const visible = (names: readonly string[]): string[] => names.filter((name) => !name.startsWith('.'));

/** Everything the driver writes by default must agree within one snapshot. */
export function checkSnapshot(snapshot: FolderSnapshot, expected: FolderExpectation = {}): FolderFacts {
  const fail = (message: string): never => {
    throw new FolderCheckError(snapshot.folder, message);
  };
  const file = (name: string): Buffer => snapshot.files.get(name) ?? fail(`${name} is missing`);
  // Credential bundle layout: key matches leaf, own trust domain bundle present.
  const parsed = parseCredentialFiles(snapshot.files, { layout: 'credential-bundle' });
  const svid = parsed.material.svid;
  // Split layout from the same snapshot must be the same SVID.
  const split = X509Svid.parse(file('svid.pem'), file('svid_key.pem'));
  if (split.serialNumber !== svid.serialNumber) fail(`svid.pem serial ${split.serialNumber} != credential bundle serial ${svid.serialNumber}`);
  if (split.privateKeyPem() !== svid.privateKeyPem()) fail('svid_key.pem differs from the key in the credential bundle');
  const td = svid.id.trustDomain;
  const splitBundle = X509Bundle.parse(td, file('bundle.pem'));
  // Each bundle must anchor the chain it was written with (a bundle from another CA generation fails here).
  verifyX509Svid(svid.certificates, parsed.material.bundles, { now: expected.at ?? new Date() });
  verifyX509Svid(split.certificates, new X509BundleSet([splitBundle]), { now: expected.at ?? new Date() });
  const identity = JSON.parse(file('identity.json').toString('utf8')) as { spiffeId?: unknown; serial?: unknown };
  if (identity.spiffeId !== svid.id.toString()) fail(`identity.json spiffeId ${String(identity.spiffeId)} != ${svid.id.toString()}`);
  if (identity.serial !== svid.serialNumber) fail(`identity.json serial ${String(identity.serial)} != ${svid.serialNumber}`);
  if (expected.spiffeId !== undefined && svid.id.toString() !== expected.spiffeId) {
    fail(`holds ${svid.id.toString()}, expected ${expected.spiffeId}`);
  }
  const ownRoots = parsed.material.bundles.get(td)?.authorities.length ?? 0;
  return { spiffeId: svid.id.toString(), serial: svid.serialNumber, payloadDir: snapshot.payloadDir, ownRoots };
}

/** Reads and checks a driver-written folder the way a workload would (FileSource's snapshot read). */
export async function checkFolder(folder: string, expected: FolderExpectation = {}): Promise<FolderFacts> {
  const { value } = await readSnapshot(folder, {
    select: visible,
    parse: (snapshot) => checkSnapshot(snapshot, expected),
  });
  return value;
}

/**
 * The writer's layout after it settled: `..data` plus exactly one payload directory, and every
 * visible name a link into `..data/`.
 */
export async function checkLayout(folder: string): Promise<void> {
  const names = await readdir(folder);
  const data = await readlink(join(folder, '..data'));
  const payloadDirs = names.filter((name) => name.startsWith('..') && name !== '..data');
  if (payloadDirs.length !== 1 || payloadDirs[0] !== data) {
    throw new FolderCheckError(folder, `expected only the current payload ${data}, found ${JSON.stringify(payloadDirs)}`);
  }
  for (const name of visible(names)) {
    const stat = await lstat(join(folder, name));
    if (!stat.isSymbolicLink() || (await readlink(join(folder, name))) !== `..data/${name}`) {
      throw new FolderCheckError(folder, `${name} is not a link into ..data`);
    }
  }
}

export function serialOfPem(pem: Buffer | string): string {
  return new X509Certificate(pem).serialNumber;
}
