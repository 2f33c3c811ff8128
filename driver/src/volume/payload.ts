import { X509Certificate } from 'node:crypto';
import { encodeCertificatesPem, encodePem, SpiffeId, splitDer, TrustDomain } from '@spire-csi/sdk';
import type { AgentX509Svid, BundleUpdate } from '../spire/identity-provider.js';
import { parseJwks } from '../spire/jwks.js';
import type { PayloadFile } from './atomic-writer.js';
import type { VolumeJwtState } from './sink.js';
import type { VolumeSpec } from './volume-spec.js';

export const CREDENTIAL_BUNDLE_FILE = 'credential-bundle.pem';
export const IDENTITY_FILE = 'identity.json';
export const TRUST_BUNDLE_SUFFIX = '.spiffe-trust-bundle.pem';
export const JWT_BUNDLE_SUFFIX = '.jwt-bundle.json';

/** Key material: owner-only, or group-readable by the pod's fsGroup (the files are root:fsGroup). */
export const KEY_MODE_OWNER_ONLY = 0o400;
export const KEY_MODE_GROUP = 0o440;
/** Certificates, bundles and identity facts are public. */
export const PUBLIC_MODE = 0o444;

export type PayloadSvid = Pick<AgentX509Svid, 'spiffeId' | 'chainDer' | 'keyDer' | 'expiresAt'>;

export interface PayloadInput {
  readonly spec: VolumeSpec;
  readonly svid: PayloadSvid;
  readonly bundles: BundleUpdate;
  /** Trust domains the SVID federates with, as `td` or `spiffe://td`. */
  readonly federatesWith: readonly string[];
  /** The JWT-SVID and JWT bundles, when the volume asks for audiences. */
  readonly jwt?: VolumeJwtState;
  readonly now: Date;
}

/** The non-secret facts written to identity.json. */
export interface IdentityFacts {
  readonly spiffeId: string;
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
  readonly jwtExpiresAt?: string;
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

/** `spiffe://td` or `td` → `td`. */
export function trustDomainName(id: string): string {
  return TrustDomain.parse(id).name;
}

export function trustBundleFileName(trustDomain: string): string {
  return `${trustDomain}${TRUST_BUNDLE_SUFFIX}`;
}

export function jwtBundleFileName(trustDomain: string): string {
  return `${trustDomain}${JWT_BUNDLE_SUFFIX}`;
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

  const federatesWith = [...new Set(input.federatesWith.map(trustDomainName))].sort();
  const federated = federatesWith
    .filter((td) => td !== ownTd && (bundles.get(td)?.length ?? 0) > 0);
  const keyMode = spec.fsGroup === null ? KEY_MODE_OWNER_ONLY : KEY_MODE_GROUP;
  const chainPem = encodeCertificatesPem(svid.chainDer);
  const keyPem = encodePem('PRIVATE KEY', svid.keyDer);
  const bundlePem = (td: string): string => encodeCertificatesPem(splitDer(bundles.get(td) ?? Buffer.alloc(0)));

  const files = new Map<string, PayloadFile>();
  const add = (name: string, data: string | Buffer, mode: number): void => {
    if (files.has(name)) throw new PayloadError(`file name ${name} is used twice; choose another name for it`);
    files.set(name, { data, mode });
  };
  add(CREDENTIAL_BUNDLE_FILE, keyPem + chainPem, keyMode);
  for (const td of [ownTd, ...federated]) add(trustBundleFileName(td), bundlePem(td), PUBLIC_MODE);
  add(spec.files.svid, chainPem, PUBLIC_MODE);
  add(spec.files.key, keyPem, keyMode);
  const splitBundle = spec.bundleIncludeFederated ? [ownTd, ...federated].map(bundlePem).join('') : bundlePem(ownTd);
  add(spec.files.bundle, splitBundle, PUBLIC_MODE);

  const jwtFacts = input.jwt === undefined ? {} : addJwtFiles(input.jwt, federatesWith, keyMode, spec.jwtSvidFile, add);

  const leaf = new X509Certificate(svid.chainDer[0] as Buffer);
  const identity: IdentityFacts = {
    spiffeId: svid.spiffeId,
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
    serial: leaf.serialNumber,
    trustDomains: [ownTd, ...federated],
    federatesWith,
    updatedAt: input.now.toISOString(),
    ...jwtFacts,
  };
  add(IDENTITY_FILE, `${JSON.stringify(identity, null, 2)}\n`, PUBLIC_MODE);
  return { files, identity };
}

/**
 * The token (key-like mode: it is a bearer credential) and one JWKS file per trust domain the pod
 * may talk to that has JWT keys: the token's own, which must be there, then federated ones.
 */
function addJwtFiles(
  jwt: VolumeJwtState,
  federatesWith: readonly string[],
  keyMode: number,
  tokenFile: string,
  add: (name: string, data: string | Buffer, mode: number) => void,
): Pick<IdentityFacts, 'jwtSpiffeId' | 'jwtAudiences' | 'jwtExpiresAt' | 'jwtTrustDomains'> {
  const own = SpiffeId.parse(jwt.spiffeId).trustDomain.name;
  if (jwt.token === '') throw new PayloadError(`the JWT-SVID for ${jwt.spiffeId} is empty`);
  if (!jwt.bundles.has(own)) throw new PayloadError(`no JWT bundle for ${own}`);
  const domains = [own, ...federatesWith.filter((td) => td !== own && jwt.bundles.has(td))];
  add(tokenFile, jwt.token, keyMode);
  for (const td of domains) {
    const jwks = jwt.bundles.get(td) as Buffer;
    try {
      parseJwks(jwks);
    } catch (error) {
      throw new PayloadError(`the JWT bundle for ${td} is unusable: ${(error as Error).message}`);
    }
    add(jwtBundleFileName(td), jwks, PUBLIC_MODE);
  }
  return {
    jwtSpiffeId: jwt.spiffeId,
    jwtAudiences: [...jwt.audiences],
    jwtExpiresAt: jwt.expiresAt.toISOString(),
    jwtTrustDomains: domains,
  };
}
