import { CertificateAuthority } from './ca.js';
import { JwtAuthority } from './jwt-authority.js';

interface FederatedAuthorities {
  readonly ca: CertificateAuthority;
  readonly jwt: JwtAuthority;
}

/**
 * The dev agent's authorities: its own trust domain's current CA and JWT signing key, the ones
 * they replaced (still trusted while a rotation overlaps), and a CA and JWT key per federated
 * trust domain. `version` (X.509) and `jwtVersion` change whenever that bundle set does, so
 * streams can tell whether they are behind.
 */
export class TrustStore {
  private currentCa: CertificateAuthority;
  private previous: CertificateAuthority[] = [];
  private jwtSigner: JwtAuthority;
  /** Every key in the own JWT bundle: the signer, a prepared successor, keys still overlapping. */
  private jwtPublished: JwtAuthority[];
  private readonly federated = new Map<string, FederatedAuthorities>();
  private bundleVersion = 0;
  private jwtBundleVersion = 0;

  private constructor(
    readonly trustDomain: string,
    ca: CertificateAuthority,
    jwt: JwtAuthority,
    private readonly now: () => number,
  ) {
    this.currentCa = ca;
    this.jwtSigner = jwt;
    this.jwtPublished = [jwt];
  }

  static async create(trustDomain: string, now: () => number): Promise<TrustStore> {
    const [ca, jwt] = await Promise.all([CertificateAuthority.create(trustDomain, { now }), JwtAuthority.create(trustDomain)]);
    return new TrustStore(trustDomain, ca, jwt, now);
  }

  get current(): CertificateAuthority {
    return this.currentCa;
  }

  /** The key that signs new JWT-SVIDs. */
  get currentJwtAuthority(): JwtAuthority {
    return this.jwtSigner;
  }

  get version(): number {
    return this.bundleVersion;
  }

  get jwtVersion(): number {
    return this.jwtBundleVersion;
  }

  /**
   * First half of a JWT key rotation: the new key joins the bundle but does not sign yet, so
   * validators can learn it before the first token it signs reaches them (SPIRE's prepared key).
   */
  async prepareJwt(): Promise<JwtAuthority> {
    const next = await JwtAuthority.create(this.trustDomain);
    this.jwtPublished.push(next);
    this.jwtBundleVersion++;
    return next;
  }

  /** Second half: `next` signs from now on; the old key stays in the bundle until dropPreviousJwt(). */
  activateJwt(next: JwtAuthority): void {
    if (!this.jwtPublished.includes(next)) throw new Error('dev-agent: activating a JWT key that is not in the bundle');
    this.jwtSigner = next;
  }

  dropPreviousJwt(): boolean {
    if (this.jwtPublished.length === 1) return false;
    this.jwtPublished = [this.jwtSigner];
    this.jwtBundleVersion++;
    return true;
  }

  /** New CA signs from now on; the old root stays in the bundle until dropPrevious(). */
  async rotate(): Promise<void> {
    const next = await CertificateAuthority.create(this.trustDomain, { now: this.now });
    this.previous.push(this.currentCa);
    this.currentCa = next;
    this.bundleVersion++;
  }

  dropPrevious(): boolean {
    if (this.previous.length === 0) return false;
    this.previous = [];
    this.bundleVersion++;
    return true;
  }

  async addFederated(trustDomain: string): Promise<boolean> {
    if (trustDomain === this.trustDomain || this.federated.has(trustDomain)) return false;
    const [ca, jwt] = await Promise.all([CertificateAuthority.create(trustDomain, { now: this.now }), JwtAuthority.create(trustDomain)]);
    if (this.federated.has(trustDomain)) return false;
    this.federated.set(trustDomain, { ca, jwt });
    this.bundleVersion++;
    this.jwtBundleVersion++;
    return true;
  }

  removeFederated(trustDomain: string): boolean {
    if (!this.federated.delete(trustDomain)) return false;
    this.bundleVersion++;
    this.jwtBundleVersion++;
    return true;
  }

  hasFederated(trustDomain: string): boolean {
    return this.federated.has(trustDomain);
  }

  federatedTrustDomains(): string[] {
    return [...this.federated.keys()].sort();
  }

  federatedCa(trustDomain: string): CertificateAuthority | undefined {
    return this.federated.get(trustDomain)?.ca;
  }

  federatedJwtAuthority(trustDomain: string): JwtAuthority | undefined {
    return this.federated.get(trustDomain)?.jwt;
  }

  /** As SPIRE sends them: keyed `spiffe://<td>`, each value the roots' DER concatenated. */
  caCertificates(): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    out[`spiffe://${this.trustDomain}`] = Buffer.concat([this.currentCa, ...this.previous].map((ca) => ca.rootDer));
    for (const [td, { ca }] of this.federated) out[`spiffe://${td}`] = ca.rootDer;
    return out;
  }

  /** As SPIRE sends them: keyed `spiffe://<td>`, each value a JWKS document (JSON bytes). */
  jwtBundles(): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    out[`spiffe://${this.trustDomain}`] = jwks(this.jwtPublished);
    for (const [td, { jwt }] of this.federated) out[`spiffe://${td}`] = jwks([jwt]);
    return out;
  }
}

function jwks(authorities: readonly JwtAuthority[]): Buffer {
  return Buffer.from(JSON.stringify({ keys: authorities.map((a) => a.publicJwk) }));
}
