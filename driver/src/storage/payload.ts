import { createHash, X509Certificate } from 'node:crypto';
import { encodeCertificatesPem, encodePem, ownBytes, ownConcat, splitDer } from '@spire-csi/sdk/internal';
import { SpiffeId } from '@spire-csi/sdk/spiffeid';
import type { X509Svid } from '@spire-csi/sdk/x509';
import {
  extraCredentialBundleFileName,
  HINTS_FILE,
  IDENTITY_FILE,
  jwtBundleFileName,
  trustBundleFileName,
  type HintsFile,
  type HintsFileEntry,
} from '@spire-csi/sdk/layout';
import type { AgentX509Svid, BundleUpdate } from '../identity/identity-backend.js';
import type { PayloadFile } from './atomic-writer.js';
import type { PemMemo } from './pem-memo.js';
import { earliestJwtExpiry, jwtSvidFilesOf, type VolumeJwtState } from '../volume/volume-state.js';
import type { VolumeSpec } from '../volume/volume-spec.js';

/** Key material: owner-only, or group-readable by the pod's fsGroup (the files are root:fsGroup). */
export const KEY_MODE_OWNER_ONLY = 0o400;
export const KEY_MODE_GROUP = 0o440;
/** Certificates, bundles and identity facts are public. */
export const PUBLIC_MODE = 0o444;

export type PayloadSvid = Pick<AgentX509Svid, 'spiffeId' | 'chainDer' | 'keyDer'> & {
  /** The agent's hint for it; written to identity.json and hints.json (empty when none). */
  readonly hint?: string;
};

/** Another SVID of the pod, published next to the chosen one with all-svids. */
export interface PayloadExtraSvid {
  readonly svid: PayloadSvid;
  /** As for PayloadInput.parsed: the same SVID parsed, which keys the PEM memo. */
  readonly parsed?: X509Svid;
}

export interface PayloadInput {
  readonly spec: VolumeSpec;
  readonly svid: PayloadSvid;
  readonly bundles: BundleUpdate;
  /** Trust domains the SVID federates with, as `td` or `spiffe://td`. */
  readonly federatesWith: readonly string[];
  /** The JWT-SVIDs (one per audience) and JWT bundles, when the volume asks for audiences. */
  readonly jwt?: VolumeJwtState;
  readonly now: Date;
  /**
   * The same SVID already parsed (VolumeState.parsed): its leaf gives identity.json's facts without
   * parsing the certificate again, and it keys the PEM memo.
   */
  readonly parsed?: X509Svid;
  /** Reuses PEM encodings across volumes that publish the same SVID and bundles. */
  readonly pem?: PemMemo;
  /**
   * With all-svids: the pod's other SVIDs, validated, in the agent's order; each is written as
   * `<n>.<credential bundle>` and listed in hints.json.
   */
  readonly extras?: readonly PayloadExtraSvid[];
}

/** The non-secret facts written to identity.json. */
export interface IdentityFacts {
  readonly spiffeId: string;
  /** The agent's hint for the SVID (empty when none). */
  readonly hint: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly serial: string;
  /** Trust domains that got a trust bundle file, own first. */
  readonly trustDomains: readonly string[];
  readonly federatesWith: readonly string[];
  readonly updatedAt: string;
  /** JWT facts, only when the volume asks for JWT audiences; never the token. */
  readonly jwtSpiffeId?: string;
  readonly jwtAudiences?: readonly string[];
  /** The earliest `exp` of the volume's tokens. */
  readonly jwtExpiresAt?: string;
  /** Audience to the file holding its token. */
  readonly jwtSvidFiles?: Readonly<Record<string, string>>;
  /** Trust domains that got a JWT bundle file, own first. */
  readonly jwtTrustDomains?: readonly string[];
}

export interface BuiltPayload {
  readonly files: Map<string, PayloadFile>;
  readonly identity: IdentityFacts;
}

export class PayloadError extends Error {
  constructor(message: string) {
    super(`payload: ${message}`);
    this.name = 'PayloadError';
  }
}

/**
 * The full file plan for one volume update, computed from already validated agent data. Pure:
 * the same input gives the same bytes, which lets the writer skip identical updates.
 */
export function buildPayload(input: PayloadInput): BuiltPayload {
  const { spec, svid, bundles } = input;
  if (svid.chainDer.length === 0) throw new PayloadError(`SVID ${svid.spiffeId} has an empty certificate chain`);
  const ownTd = SpiffeId.parse(svid.spiffeId).trustDomain.name;
  const ownBundle = bundles.get(ownTd);
  if (ownBundle === undefined || ownBundle.length === 0) throw new PayloadError(`no trust bundle for ${ownTd}`);

  // Trust domain names, checked and sorted where the agent's data entered (identity/).
  const federatesWith = input.federatesWith;
  const federated = federatesWith
    .filter((td) => td !== ownTd && (bundles.get(td)?.length ?? 0) > 0);
  const keyMode = spec.fsGroup === null ? KEY_MODE_OWNER_ONLY : KEY_MODE_GROUP;
  const memo = input.pem;
  // Memo keys: the parsed SVID stands for exactly these chain and key bytes (the validation cache
  // hands every volume of one SVID the same object); bundle buffers come from the one shared
  // bundle stream, so every volume holds the same Buffer for a trust domain.
  const owner = input.parsed;
  const encode = (slot: string, make: () => string): Buffer =>
    memo === undefined || owner === undefined ? ownBytes(make()) : memo.get(owner, slot, make);
  const chainPem = encode('chain', () => encodeCertificatesPem(svid.chainDer));
  const keyPem = encode('key', () => encodePem('PRIVATE KEY', svid.keyDer));
  const credentialPem = encode('credential', () => `${keyPem.toString('utf8')}${chainPem.toString('utf8')}`);
  const extras = input.extras ?? [];
  // Every SVID is validated against its own trust domain's bundle, so each of those goes out too.
  const extraDomains = extras.map((extra) => SpiffeId.parse(extra.svid.spiffeId).trustDomain.name).filter((td) => td !== ownTd);
  const domains = [...new Set([ownTd, ...extraDomains, ...federated])].filter((td) => (bundles.get(td)?.length ?? 0) > 0);
  const bundlePem = (td: string): Buffer => {
    const der = bundles.get(td) ?? Buffer.alloc(0);
    const make = (): string => encodeCertificatesPem(splitDer(der));
    return memo === undefined || der.length === 0 ? ownBytes(make()) : memo.get(der, 'bundle', make);
  };

  const files = new Map<string, PayloadFile>();
  const add = (name: string, data: string | Buffer, mode: number, sameAs?: PayloadFile['sameAs']): void => {
    if (files.has(name)) throw new PayloadError(`file name ${name} is used twice; choose another name for it`);
    files.set(name, sameAs === undefined ? { data, mode } : { data, mode, sameAs });
  };
  add(spec.credentialBundleFile, credentialPem, keyMode);
  const hints: HintsFileEntry[] = [hintsEntry(spec.credentialBundleFile, svid)];
  extras.forEach((extra, i) => {
    const file = extraCredentialBundleFileName(i + 1, spec.credentialBundleFile);
    add(file, extraCredentialPem(extra, memo), keyMode);
    hints.push(hintsEntry(file, extra.svid));
  });
  for (const td of domains) add(trustBundleFileName(td, spec.layoutNames), bundlePem(td), PUBLIC_MODE);
  add(spec.files.svid, chainPem, PUBLIC_MODE);
  add(spec.files.key, keyPem, keyMode);
  const splitBundle = spec.bundleIncludeFederated ? ownConcat([ownTd, ...federated].map(bundlePem)) : bundlePem(ownTd);
  add(spec.files.bundle, splitBundle, PUBLIC_MODE);

  const jwtFacts = input.jwt === undefined ? {} : addJwtFiles(input.jwt, spec, federatesWith, keyMode, add);

  const leaf = input.parsed?.certificates[0] ?? new X509Certificate(svid.chainDer[0] as Buffer);
  if (spec.allSvids) {
    const hintsFile: HintsFile = { credentialBundles: hints };
    add(HINTS_FILE, `${JSON.stringify(hintsFile, null, 2)}\n`, PUBLIC_MODE);
  }
  const identity: IdentityFacts = {
    spiffeId: svid.spiffeId,
    hint: svid.hint ?? '',
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
    serial: leaf.serialNumber,
    trustDomains: domains,
    federatesWith,
    updatedAt: input.now.toISOString(),
    ...jwtFacts,
  };
  add(IDENTITY_FILE, `${JSON.stringify(identity, null, 2)}\n`, PUBLIC_MODE, sameIdentityFacts);
  return { files, identity };
}

/** A credential bundle (key, then chain) of an extra SVID, memoized on its parsed object like the chosen one's. */
function extraCredentialPem(extra: PayloadExtraSvid, memo: PemMemo | undefined): Buffer {
  if (extra.svid.chainDer.length === 0) throw new PayloadError(`SVID ${extra.svid.spiffeId} has an empty certificate chain`);
  const make = (): string => `${encodePem('PRIVATE KEY', extra.svid.keyDer)}${encodeCertificatesPem(extra.svid.chainDer)}`;
  return memo === undefined || extra.parsed === undefined ? ownBytes(make()) : memo.get(extra.parsed, 'credential', make);
}

function hintsEntry(file: string, svid: PayloadSvid): HintsFileEntry {
  const leaf = svid.chainDer[0] as Buffer;
  return { file, spiffeId: svid.spiffeId, hint: svid.hint ?? '', leafSha256: createHash('sha256').update(leaf).digest('hex') };
}

/**
 * identity.json's `updatedAt` is when the content last changed: a file whose other facts are
 * identical is the same content, so a driver restart (which re-delivers every volume) or a bundle
 * push that changes nothing a volume publishes rewrites nothing.
 */
export function sameIdentityFacts(existing: Buffer, wanted: Buffer): boolean {
  try {
    const a = JSON.parse(existing.toString('utf8')) as Record<string, unknown>;
    const b = JSON.parse(wanted.toString('utf8')) as Record<string, unknown>;
    if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return false;
    if (typeof a.updatedAt !== 'string') return false;
    return JSON.stringify({ ...a, updatedAt: '' }, null, 2) === JSON.stringify({ ...b, updatedAt: '' }, null, 2);
  } catch {
    return false;
  }
}

/**
 * One token file per audience (key-like mode: each is a bearer credential; named by
 * jwtSvidFilesOf) and one JWKS file per trust domain the pod may talk to that has JWT keys: the
 * tokens' own, which must be there, then federated ones.
 */
function addJwtFiles(
  jwt: VolumeJwtState,
  spec: VolumeSpec,
  federatesWith: readonly string[],
  keyMode: number,
  add: (name: string, data: string | Buffer, mode: number) => void,
): Pick<IdentityFacts, 'jwtSpiffeId' | 'jwtAudiences' | 'jwtExpiresAt' | 'jwtSvidFiles' | 'jwtTrustDomains'> {
  const fileOf = jwtSvidFilesOf(spec);
  const audiences = jwt.tokens.map((t) => t.audience);
  // A file per audience the volume asks for, each holding that audience's token, or nothing.
  if (audiences.length !== spec.jwtAudiences.length || audiences.some((audience, i) => audience !== spec.jwtAudiences[i])) {
    throw new PayloadError(
      `the JWT-SVIDs are for audiences ${JSON.stringify(audiences)}, but the volume asks for ${JSON.stringify(spec.jwtAudiences)}`,
    );
  }
  const [first] = jwt.tokens;
  if (first === undefined) throw new PayloadError('no JWT-SVID for a volume that asks for JWT audiences');
  const spiffeId = first.spiffeId;
  if (jwt.tokens.some((t) => t.spiffeId !== spiffeId)) {
    throw new PayloadError(`the JWT-SVIDs are for different SPIFFE IDs (${[...new Set(jwt.tokens.map((t) => t.spiffeId))].join(', ')})`);
  }
  const own = SpiffeId.parse(spiffeId).trustDomain.name;
  if (!jwt.bundles.has(own)) throw new PayloadError(`no JWT bundle for ${own}`);
  const domains = [own, ...federatesWith.filter((td) => td !== own && jwt.bundles.has(td))];
  const files: [string, string][] = [];
  for (const { audience, token } of jwt.tokens) {
    if (token === '') throw new PayloadError(`the JWT-SVID for ${spiffeId} and audience ${JSON.stringify(audience)} is empty`);
    const file = fileOf.get(audience) as string;
    add(file, token, keyMode);
    files.push([audience, file]);
  }
  for (const td of domains) {
    // JWKS documents were checked where they entered (identity/); the bytes go out unchanged.
    add(jwtBundleFileName(td), jwt.bundles.get(td) as Buffer, PUBLIC_MODE);
  }
  return {
    jwtSpiffeId: spiffeId,
    jwtAudiences: audiences,
    jwtExpiresAt: earliestJwtExpiry(jwt).toISOString(),
    // fromEntries defines own properties, so an audience such as "__proto__" is just a key.
    jwtSvidFiles: Object.fromEntries(files),
    jwtTrustDomains: domains,
  };
}
