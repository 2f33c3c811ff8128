import { createHash } from 'node:crypto';
import type { Clock } from '@spire-csi/sdk/clock';
import type { IdentityBackend, JwtBundleUpdate } from '../identity/identity-backend.js';
import type { BackoffOptions } from '../retry/backoff.js';
import type { VolumeJwtState, VolumeJwtToken } from '../volume/volume-state.js';
import type { VolumeSpec } from '../volume/volume-spec.js';
import type { CheckedJwtSvid } from './agent-jwt.js';
import { JwtRefresher, type JwtFailure } from './jwt-refresher.js';

export interface VolumeJwtDeps {
  readonly identity: IdentityBackend;
  readonly clock: Clock;
  /** Uniform [0, 1) for refresh jitter. */
  readonly random: () => number;
  /** Retry schedule after a failed fetch. */
  readonly retry?: BackoffOptions;
}

export interface VolumeJwtHandlers {
  /** A new usable token for `audience`. */
  onToken(audience: string): void;
  /** New JWT bundles for the pod. */
  onBundles(): void;
  /** A fetch failed (its audience keeps its previous token, if any). */
  onFailure(failure: JwtFailure): void;
}

/** The JWT part of the next state, or why there is none yet. */
export type JwtStateResult =
  | { readonly state: VolumeJwtState }
  /** `disagree`: the tokens are usable but name different SPIFFE IDs (worth a warning once published). */
  | { readonly problem: string; readonly disagree?: boolean };

/**
 * One volume's JWT-SVIDs: a refresher per audience, each fetching for its audience alone (a token
 * for several audiences could be replayed by any of them to the others), the latest usable token
 * and the last failure of each, and the pod's JWT bundles. The session decides what to publish.
 */
export class VolumeJwt {
  private readonly spec: VolumeSpec;
  private readonly deps: VolumeJwtDeps;
  /** The latest usable token of each audience; publishing waits until every audience has one. */
  private readonly tokens = new Map<string, CheckedJwtSvid>();
  /** The last failed attempt of each audience, cleared by its next token. */
  private readonly failures = new Map<string, JwtFailure>();
  private bundles: JwtBundleUpdate | undefined;
  private readonly refreshers: JwtRefresher[] = [];
  private unwatchBundles: (() => void) | undefined;

  constructor(spec: VolumeSpec, deps: VolumeJwtDeps) {
    this.spec = spec;
    this.deps = deps;
  }

  start(handlers: VolumeJwtHandlers): void {
    const { identity, clock, random, retry } = this.deps;
    this.unwatchBundles = identity.watchJwtBundles(this.spec.pod, (bundles) => {
      this.bundles = bundles;
      handlers.onBundles();
    });
    for (const audience of this.spec.jwtAudiences) {
      const refresher = new JwtRefresher({
        identity,
        pod: this.spec.pod,
        audience,
        spiffeId: this.spec.spiffeId,
        hint: this.spec.hint,
        clock,
        random,
        retry,
        onToken: (token) => {
          this.tokens.set(audience, token);
          this.failures.delete(audience);
          handlers.onToken(audience);
        },
        onFailure: (failure) => {
          this.failures.set(failure.audience, failure);
          handlers.onFailure(failure);
        },
      });
      this.refreshers.push(refresher);
      refresher.start();
    }
  }

  close(): void {
    for (const refresher of this.refreshers) refresher.close();
    this.unwatchBundles?.();
  }

  tokenOf(audience: string): CheckedJwtSvid | undefined {
    return this.tokens.get(audience);
  }

  failureOf(audience: string): JwtFailure | undefined {
    return this.failures.get(audience);
  }

  firstAudienceWithoutToken(): string | undefined {
    return this.spec.jwtAudiences.find((audience) => !this.tokens.has(audience));
  }

  /** Why `audience` has no usable token, for a publish timeout (named when there are several). */
  problemOf(audience: string): string {
    const problem = this.failures.get(audience)?.problem ?? 'waiting for the first JWT-SVID from the SPIRE agent';
    return this.spec.jwtAudiences.length > 1 ? `audience ${JSON.stringify(audience)}: ${problem}` : problem;
  }

  /**
   * The JWT part of the next state: every audience needs a token, so the files of one generation
   * always belong together, and only the bundles of the trust domains this volume may use go in.
   */
  state(federated: readonly string[]): JwtStateResult {
    const tokens: VolumeJwtToken[] = [];
    let first: CheckedJwtSvid | undefined;
    for (const audience of this.spec.jwtAudiences) {
      const checked = this.tokens.get(audience);
      if (checked === undefined) return { problem: this.problemOf(audience) };
      first ??= checked;
      tokens.push({ audience, token: checked.svid.token, spiffeId: checked.svid.spiffeId, expiresAt: checked.expiresAt });
    }
    if (first === undefined) return { problem: 'no JWT audience asked for' };
    // Without csi.spire.io/spiffe-id each fetch takes the agent's first JWT-SVID; identity.json
    // names one SPIFFE ID, so tokens of different IDs wait until the refreshes agree again.
    const ids = [...new Set(tokens.map((t) => t.spiffeId))];
    if (ids.length > 1) {
      return {
        problem:
          `the JWT-SVIDs of the audiences are for different SPIFFE IDs (${ids.join(', ')}); ` +
          'set the volume attribute csi.spire.io/spiffe-id to choose one',
        disagree: true,
      };
    }
    const all = this.bundles;
    if (all === undefined) return { problem: 'waiting for the JWT bundles from the SPIRE agent' };
    const own = first.spiffeId.trustDomain.name;
    const bundles = new Map<string, Buffer>();
    // Every JWKS was checked where it entered (identity/); here only the domains this volume may use are picked.
    for (const td of [own, ...federated]) {
      const jwks = all.get(td);
      if (jwks !== undefined) bundles.set(td, jwks);
    }
    if (!bundles.has(own)) return { problem: `no JWT bundle for ${own} yet` };
    return { state: { tokens, bundles } };
  }
}

/** Hash of the tokens and bundles a JWT state publishes, length-prefixed field by field. */
export function jwtFingerprintOf(jwt: VolumeJwtState): string {
  const hash = createHash('sha256');
  const field = (data: Buffer | string): void => {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    hash.update(`${bytes.length}:`).update(bytes);
  };
  for (const { audience, token } of jwt.tokens) {
    field(audience);
    field(token);
  }
  for (const [td, jwks] of jwt.bundles) {
    field(td);
    field(jwks);
  }
  return hash.digest('hex');
}
