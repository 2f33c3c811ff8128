import type { IssuedSvid } from './ca.js';
import { entryKey } from './matcher.js';
import type { RegistrationEntry } from './registrations.js';
import type { TrustStore } from './trust-store.js';

/**
 * Messages in the shape the SPIFFE Workload API and the SPIFFE Broker API share (their X509SVID,
 * bundle maps and JWTSVID messages have the same fields): each SVID carries its own trust
 * domain's bundle, federated bundles are keyed `spiffe://<td>`, everything is DER.
 */
export interface WireSpiffeX509Svid {
  readonly spiffe_id: string;
  /** The chain, leaf first, DER concatenated. */
  readonly x509_svid: Buffer;
  /** PKCS#8 DER. */
  readonly x509_svid_key: Buffer;
  /** The own trust domain's roots, DER concatenated. */
  readonly bundle: Buffer;
  readonly hint: string;
}

export interface WireSpiffeX509SvidResponse {
  readonly svids: WireSpiffeX509Svid[];
  readonly crl: Buffer[];
  readonly federated_bundles: Record<string, Buffer>;
}

/** One identity (its SVID, the entry it was issued for) to put in a message. */
export interface IdentityToSend {
  readonly entry: RegistrationEntry;
  readonly svid: IssuedSvid;
}

/**
 * Changes exactly when buildSpiffeSvidMessage's result would (bundles change only with the trust
 * store's version), so a stream skips building and resending what it already has.
 */
export function spiffeSvidFingerprint(identities: readonly IdentityToSend[], federatesWith: Iterable<string>, trust: TrustStore): string {
  return JSON.stringify([
    identities.map(({ entry, svid }) => [entryKey(entry), svid.serial, entry.hint]),
    trust.version,
    [...new Set(federatesWith)].filter((td) => trust.hasFederated(td)).sort(),
  ]);
}

/**
 * The full set for one workload: an SVID per identity, each with the own trust domain's bundle,
 * and the bundles of `federatesWith` domains the agent holds (foreign domains it does not hold are
 * left out, as SPIRE does). `bundles` is TrustStore.caCertificates(), computed once per push.
 */
export function buildSpiffeSvidMessage(
  identities: readonly IdentityToSend[],
  federatesWith: Iterable<string>,
  trustDomain: string,
  bundles: Readonly<Record<string, Buffer>>,
): WireSpiffeX509SvidResponse {
  const ownBundle = bundles[`spiffe://${trustDomain}`]!;
  const federated_bundles: Record<string, Buffer> = {};
  for (const td of [...new Set(federatesWith)].sort()) {
    const bundle = bundles[`spiffe://${td}`];
    if (bundle) federated_bundles[`spiffe://${td}`] = bundle;
  }
  const svids = identities.map(({ entry, svid }) => ({
    spiffe_id: entry.spiffeId,
    x509_svid: Buffer.concat(svid.chainDer),
    x509_svid_key: svid.keyDer,
    bundle: ownBundle,
    hint: entry.hint,
  }));
  return { svids, crl: [], federated_bundles };
}

/** A JWTSVID message of either API. The token is a bearer credential: never logged. */
export interface WireSpiffeJwtSvid {
  readonly spiffe_id: string;
  readonly svid: string;
  readonly hint: string;
}
