/**
 * From one FetchX509SVID message to X509Material, or a reason it is unusable. Pure: (message,
 * choice, time) in, material out, so every rule is testable without a socket.
 *
 * Each message is the complete set (Workload API §4.3): the chosen SVID with its own trust
 * domain's bundle (the `bundle` field of that SVID) plus every federated bundle. Whatever a message
 * leaves out is gone, which is how a federated bundle is removed. The SVID is held to the same
 * rules as one read from a folder (X509-SVID.md, key matching the leaf) and must verify against
 * its own trust domain's bundle, so a message that would make every handshake fail is refused
 * before it replaces anything.
 */
import { messageOf } from '../internal/error-text.js';
import type { X509Material } from '../source/x509-source.js';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import { X509Bundle } from '../x509/bundle.js';
import { X509BundleSet } from '../x509/bundle-set.js';
import { X509Svid } from '../x509/svid.js';
import { verifyX509Svid } from '../x509/verify.js';
import { WorkloadApiError } from './errors.js';
import type { X509SvidMessage, X509SvidResponseMessage } from './workload-proto.js';

/** Which SVID to take when the response holds several; neither set = the first (as the spec says). */
export interface SvidChoice {
  readonly spiffeId?: SpiffeId;
  readonly hint?: string;
}

const invalid = (message: string, cause?: unknown): WorkloadApiError =>
  new WorkloadApiError('invalid-response', message, cause === undefined ? undefined : { cause });

function describeChoice(choice: SvidChoice): string {
  const parts = [
    ...(choice.spiffeId !== undefined ? [`SPIFFE ID ${choice.spiffeId.toString()}`] : []),
    ...(choice.hint !== undefined ? [`hint "${choice.hint}"`] : []),
  ];
  return parts.join(' and ');
}

function chooseSvid(svids: readonly X509SvidMessage[], choice: SvidChoice): X509SvidMessage {
  if (svids.length === 0) {
    throw invalid('the response holds no X509-SVID (the spec requires at least one; no identity was issued to this workload)');
  }
  if (choice.spiffeId === undefined && choice.hint === undefined) return svids[0]!;
  const wanted = choice.spiffeId?.toString();
  // The spec: with duplicate hints, the first one wins; find() does exactly that.
  const found = svids.find((s) => (wanted === undefined || s.spiffe_id === wanted) && (choice.hint === undefined || s.hint === choice.hint));
  if (found !== undefined) return found;
  const offered = svids.map((s) => (s.hint === '' ? s.spiffe_id : `${s.spiffe_id} (hint "${s.hint}")`)).join(', ');
  throw invalid(`the response holds no X509-SVID with ${describeChoice(choice)}; it holds ${offered}`);
}

function parseSvid(message: X509SvidMessage): X509Svid {
  let svid: X509Svid;
  try {
    svid = X509Svid.fromDer(message.x509_svid, message.x509_svid_key);
  } catch (err) {
    throw invalid(`the X509-SVID for ${JSON.stringify(message.spiffe_id)} is not usable: ${messageOf(err)}`, err);
  }
  if (svid.id.toString() !== message.spiffe_id) {
    throw invalid(`the X509-SVID's spiffe_id field says ${JSON.stringify(message.spiffe_id)} but its certificate is for ${svid.id.toString()}`);
  }
  return svid;
}

function ownBundle(svid: X509Svid, der: Buffer): X509Bundle {
  let bundle: X509Bundle;
  try {
    bundle = X509Bundle.fromDer(svid.id.trustDomain, der);
  } catch (err) {
    throw invalid(`the bundle sent with ${svid.id.toString()} is not usable: ${messageOf(err)}`, err);
  }
  if (bundle.isEmpty()) throw invalid(`the bundle sent with ${svid.id.toString()} is empty`);
  return bundle;
}

function federatedBundles(entries: Readonly<Record<string, Buffer>>, own: TrustDomain): X509Bundle[] {
  const bundles: X509Bundle[] = [];
  for (const [key, der] of Object.entries(entries)) {
    // Keyed by the trust domain's SPIFFE ID (spiffe://td), as the spec says; a bare name is not one.
    if (!key.startsWith('spiffe://')) {
      throw invalid(`federated_bundles key ${JSON.stringify(key)} is not a trust domain SPIFFE ID (spiffe://<trust domain>)`);
    }
    let td: TrustDomain;
    try {
      td = TrustDomain.parse(key);
    } catch (err) {
      throw invalid(`federated_bundles key ${JSON.stringify(key)} is not a valid trust domain: ${messageOf(err)}`, err);
    }
    // The SVID's own trust domain is trusted through the bundle sent with the SVID, never through
    // a "federated" copy that could disagree with it.
    if (td.equals(own)) continue;
    try {
      bundles.push(X509Bundle.fromDer(td, der));
    } catch (err) {
      throw invalid(`the federated bundle for ${key} is not usable: ${messageOf(err)}`, err);
    }
  }
  return bundles;
}

/**
 * The material in `message` for `choice`, checked at `now`. Throws a WorkloadApiError of kind
 * `invalid-response` that says what is wrong (never with key material).
 */
export function materialFromResponse(message: X509SvidResponseMessage, choice: SvidChoice, now: Date): X509Material {
  const chosen = chooseSvid(message.svids ?? [], choice);
  const svid = parseSvid(chosen);
  const own = ownBundle(svid, chosen.bundle);
  const bundles = new X509BundleSet([own, ...federatedBundles(message.federated_bundles ?? {}, svid.id.trustDomain)]);
  try {
    // Only the SVID's own trust domain may anchor its chain (verifyX509Svid's rule); this also
    // refuses an SVID that is expired or not yet valid by the injected clock.
    verifyX509Svid(svid.certificates, bundles, { now });
  } catch (err) {
    throw invalid(`the X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) does not verify against the bundle of its own trust domain: ${messageOf(err)}`, err);
  }
  return Object.freeze({ svid, bundles });
}
