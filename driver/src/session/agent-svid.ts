import type { X509Certificate } from 'node:crypto';
import { SpiffeId, TrustDomain } from '@spire-csi/sdk/spiffeid';
import { X509Bundle, X509Svid, verifyX509Svid } from '@spire-csi/sdk/x509';
import type { AgentX509Svid, BundleUpdate, X509SvidUpdate } from '../identity/identity-backend.js';

/**
 * `invalid`: the agent sent data that must not reach the pod (bad DER, key mismatch, ...).
 * `waiting`: the data is fine but something it needs (its trust bundle) has not arrived yet.
 */
export type AgentSvidProblem = 'invalid' | 'waiting';

export class AgentSvidError extends Error {
  readonly problem: AgentSvidProblem;

  constructor(problem: AgentSvidProblem, message: string, options?: { cause?: unknown }) {
    super(`agent-svid: ${message}`, options);
    this.name = 'AgentSvidError';
    this.problem = problem;
  }
}

/**
 * The SVID a volume publishes: the first with the requested SPIFFE ID and hint (each only when
 * asked for), so the first of all without either. SPIRE may give one SPIFFE ID several SVIDs
 * told apart by hint, hence both.
 */
export function chooseSvid(update: X509SvidUpdate, spiffeId: string | null, hint: string | null = null): AgentX509Svid | undefined {
  return update.svids.find((svid) => (spiffeId === null || svid.spiffeId === spiffeId) && (hint === null || svid.hint === hint));
}

/** An SVID in messages: its SPIFFE ID, and its hint when it has one. */
export function describeSvid(svid: { readonly spiffeId: string; readonly hint: string }): string {
  return svid.hint === '' ? svid.spiffeId : `${svid.spiffeId} (hint ${JSON.stringify(svid.hint)})`;
}

/** What a volume asks for in words, for "none of the SVIDs is ..." messages. */
export function describeChoice(spiffeId: string | null, hint: string | null): string {
  const parts = [spiffeId === null ? null : spiffeId, hint === null ? null : `hint ${JSON.stringify(hint)}`].filter((p) => p !== null);
  return parts.length === 0 ? 'any SVID' : parts.join(' with ');
}

export interface ValidateOptions {
  readonly now: Date;
  /** Normalized names whose bundles must parse too when present. */
  readonly federatesWith?: readonly string[];
}

/**
 * Parses the agent's SVID with every SPIFFE rule (through the SDK) and checks it can be published
 * now: it matches the ID the agent claims, has not expired, and its own trust bundle is present
 * and non-empty. Messages never include key bytes.
 */
export function validateAgentSvid(svid: AgentX509Svid, bundles: BundleUpdate, options: ValidateOptions): X509Svid {
  return checkAgentSvid(svid, bundles, options).svid;
}

export interface CheckedAgentSvid {
  readonly svid: X509Svid;
  /** The verified path, leaf to bundle authority: what a cached result must re-check against the clock. */
  readonly path: readonly X509Certificate[];
}

/** validateAgentSvid, also returning the verified certificate path. */
export function checkAgentSvid(svid: AgentX509Svid, bundles: BundleUpdate, options: ValidateOptions): CheckedAgentSvid {
  let claimed: SpiffeId;
  try {
    claimed = SpiffeId.parse(svid.spiffeId);
  } catch (err) {
    throw new AgentSvidError('invalid', `agent sent a malformed SPIFFE ID ${JSON.stringify(svid.spiffeId)}: ${(err as Error).message}`);
  }
  let parsed: X509Svid;
  try {
    parsed = X509Svid.fromDer(svid.chainDer, svid.keyDer);
  } catch (err) {
    throw new AgentSvidError('invalid', `agent sent an unusable X.509-SVID for ${claimed}: ${(err as Error).message}`, { cause: err });
  }
  if (!parsed.id.equals(claimed)) {
    throw new AgentSvidError('invalid', `agent labelled the SVID ${claimed} but its certificate is for ${parsed.id}`);
  }
  if (parsed.notAfter.getTime() <= options.now.getTime()) {
    throw new AgentSvidError('invalid', `agent sent an SVID for ${claimed} that expired at ${parsed.notAfter.toISOString()}`);
  }
  const own = claimed.trustDomain;
  const ownDer = bundles.get(own.name);
  if (ownDer === undefined) throw new AgentSvidError('waiting', `no trust bundle for ${own.name} yet`);
  const ownBundle = parseBundle(own, ownDer);
  if (ownBundle.isEmpty()) {
    throw new AgentSvidError('invalid', `the trust bundle for ${own.name} is empty`);
  }
  // A bundle that does not anchor the pod's own SVID would make every peer of its trust domain
  // fail; keep the last good files until the agent's two streams agree again.
  let path: readonly X509Certificate[];
  try {
    path = verifyX509Svid(parsed.certificates, ownBundle, { now: options.now }).chain;
  } catch (err) {
    throw new AgentSvidError(
      'invalid',
      `the SVID for ${claimed} does not chain to the trust bundle of ${own.name}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  for (const name of options.federatesWith ?? []) {
    const der = bundles.get(name);
    if (der !== undefined && der.length > 0) parseBundle(TrustDomain.parse(name), der);
  }
  return { svid: parsed, path };
}

/**
 * Parsed bundles by the agent's bytes: every volume's update refers to the same Buffer of the
 * shared bundle stream, so a rotation of a thousand volumes parses each CA once, not a thousand
 * times. Entries go with the Buffers.
 */
const parsedBundles = new WeakMap<Buffer, X509Bundle>();

function parseBundle(td: TrustDomain, der: Buffer): X509Bundle {
  const cached = parsedBundles.get(der);
  if (cached !== undefined && cached.trustDomain.equals(td)) return cached;
  const bundle = parseBundleDer(td, der);
  parsedBundles.set(der, bundle);
  return bundle;
}

function parseBundleDer(td: TrustDomain, der: Buffer): X509Bundle {
  if (der.length === 0) return new X509Bundle(td, []);
  try {
    return X509Bundle.fromDer(td, der);
  } catch (err) {
    throw new AgentSvidError('invalid', `the trust bundle for ${td.name} is not valid DER certificates: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
