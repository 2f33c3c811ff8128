import { CertificateAuthority } from './ca.js';

/**
 * The dev agent's CAs: its own trust domain's current CA, the CAs it replaced (still trusted while
 * a rotation overlaps), and one CA per federated trust domain. `version` changes whenever the
 * bundle set does, so streams can tell whether they are behind.
 */
export class TrustStore {
  private currentCa: CertificateAuthority;
  private previous: CertificateAuthority[] = [];
  private readonly federated = new Map<string, CertificateAuthority>();
  private bundleVersion = 0;

  private constructor(
    readonly trustDomain: string,
    ca: CertificateAuthority,
    private readonly now: () => number,
  ) {
    this.currentCa = ca;
  }

  static async create(trustDomain: string, now: () => number): Promise<TrustStore> {
    return new TrustStore(trustDomain, await CertificateAuthority.create(trustDomain, { now }), now);
  }

  get current(): CertificateAuthority {
    return this.currentCa;
  }

  get version(): number {
    return this.bundleVersion;
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
    const ca = await CertificateAuthority.create(trustDomain, { now: this.now });
    if (this.federated.has(trustDomain)) return false;
    this.federated.set(trustDomain, ca);
    this.bundleVersion++;
    return true;
  }

  removeFederated(trustDomain: string): boolean {
    if (!this.federated.delete(trustDomain)) return false;
    this.bundleVersion++;
    return true;
  }

  hasFederated(trustDomain: string): boolean {
    return this.federated.has(trustDomain);
  }

  federatedTrustDomains(): string[] {
    return [...this.federated.keys()].sort();
  }

  federatedCa(trustDomain: string): CertificateAuthority | undefined {
    return this.federated.get(trustDomain);
  }

  /** As SPIRE sends them: keyed `spiffe://<td>`, each value the roots' DER concatenated. */
  caCertificates(): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    out[`spiffe://${this.trustDomain}`] = Buffer.concat([this.currentCa, ...this.previous].map((ca) => ca.rootDer));
    for (const [td, ca] of this.federated) out[`spiffe://${td}`] = ca.rootDer;
    return out;
  }
}
