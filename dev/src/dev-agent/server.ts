import { readFile } from 'node:fs/promises';
import {
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import { loadProtos, type WireFetchJwtSvidsRequest, type WireFetchJwtSvidsResponse } from '@spire-csi/driver/internal';
import { endWithStatus, UnixGrpcEndpoint } from './grpc-endpoint.js';
import type { JwtAuthority } from './jwt-authority.js';
import { parseRegistrations, RegistrationError, type RegistrationEntry, type Registrations } from './registrations.js';
import { matchEntries } from './matcher.js';
import { checkJwtSvidRequest, checkSvidRequest, jwtSvidToWire, type JwtSvidRequest } from './responses.js';
import { StreamHub, type BundleCall, type JwtBundleCall, type SvidCall } from './stream-hub.js';
import { SvidCache } from './svid-cache.js';
import { TrustStore } from './trust-store.js';

export interface DevAgentOptions {
  readonly socketPath: string;
  readonly trustDomain: string;
  readonly registrations?: Registrations;
  /** Read at start() and by reloadRegistrations(); wins over `registrations`. */
  readonly registrationsFile?: string;
  /** Default 1 h. SVIDs are reissued at half-life. */
  readonly svidTtlMs?: number;
  /** Lifetime of each JWT-SVID. Default 5 min; every FetchJWTSVIDs signs fresh tokens. */
  readonly jwtSvidTtlMs?: number;
  readonly logger?: Logger;
  readonly clock?: { now(): number };
  readonly protoDir?: string;
  /** Answer every call with PermissionDenied, like an agent that does not list us in authorized_delegates. */
  readonly denyAll?: boolean;
}

const BANNER = '*** spire-csi dev-agent: DEVELOPMENT ONLY — NOT A SPIRE AGENT, do not use in production ***';
const NOT_A_DELEGATE = 'caller not configured as an authorized delegate';
const MAX_TIMER_MS = 2_147_483_647;
export const DEFAULT_JWT_SVID_TTL_MS = 5 * 60_000;

/**
 * A development stand-in for a SPIRE agent's admin socket: it serves the real Delegated Identity
 * API from an in-memory CA and a registration file, with knobs tests need (rotate, federate, go
 * down, deny). Every mutator resolves once the resulting updates have been written to the streams.
 */
export class DevAgent {
  readonly trustDomain: string;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly svidTtlMs: number;
  private jwtSvidTtlMs: number;
  private registrations: Registrations;
  private trust: TrustStore | null = null;
  private readonly svids: SvidCache;
  private endpoint: UnixGrpcEndpoint | null = null;
  private readonly hub = new StreamHub();
  private queue: Promise<void> = Promise.resolve();
  /** A push queued but not yet started; new subscribers join it instead of queueing one each. */
  private queuedPush: Promise<void> | null = null;
  private rotationTimer: ReturnType<typeof setTimeout> | null = null;
  private denyAll: boolean;
  private stopped = false;

  constructor(private readonly options: DevAgentOptions) {
    this.trustDomain = options.trustDomain;
    this.logger = options.logger ?? silentLogger;
    this.now = options.clock ? () => options.clock!.now() : Date.now;
    this.svidTtlMs = options.svidTtlMs ?? 3_600_000;
    this.jwtSvidTtlMs = options.jwtSvidTtlMs ?? DEFAULT_JWT_SVID_TTL_MS;
    this.registrations = options.registrations ?? { entries: [], federatedTrustDomains: [] };
    this.denyAll = options.denyAll ?? false;
    this.svids = new SvidCache((entry) => this.store.current.issueSvid(entry.spiffeId, this.svidTtlMs), this.now);
  }

  get socketPath(): string {
    return this.options.socketPath;
  }

  get answering(): boolean {
    return this.endpoint !== null;
  }

  get streamCounts(): { svid: number; bundle: number } {
    return this.hub.counts;
  }

  /** Timing of the last push that sent X509-SVIDs (see StreamHub.lastSvidPush). */
  get lastSvidPush(): StreamHub['lastSvidPush'] {
    return this.hub.lastSvidPush;
  }

  get jwtBundleStreamCount(): number {
    return this.hub.jwtBundleCount;
  }

  /** The bundles as the agent currently sends them (keyed `spiffe://<td>`). */
  caCertificates(): Record<string, Buffer> {
    return this.store.caCertificates();
  }

  /** The JWT bundles as the agent currently sends them (keyed `spiffe://<td>`, JWKS JSON bytes). */
  jwtBundles(): Record<string, Buffer> {
    return this.store.jwtBundles();
  }

  /** Key ID of the JWT authority that signs new JWT-SVIDs. */
  get jwtKeyId(): string {
    return this.store.currentJwtAuthority.kid;
  }

  async start(): Promise<void> {
    this.logger.warn({ socketPath: this.socketPath, trustDomain: this.trustDomain }, BANNER);
    this.trust ??= await TrustStore.create(this.trustDomain, this.now);
    if (this.options.registrationsFile !== undefined) await this.reloadRegistrations();
    else await this.syncFederation(this.registrations.federatedTrustDomains);
    await this.setAnswering(true);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.rotationTimer !== null) clearTimeout(this.rotationTimer);
    this.rotationTimer = null;
    await this.setAnswering(false);
    await this.queue;
  }

  /** false: end every stream with Unavailable and close the socket, like an agent that went down. */
  async setAnswering(answering: boolean): Promise<void> {
    if (answering && !this.stopped && this.endpoint === null) {
      const { DelegatedIdentity } = loadProtos(this.options.protoDir).delegatedIdentity;
      this.endpoint = await UnixGrpcEndpoint.listen(this.socketPath, DelegatedIdentity.service, this.handlers());
      this.logger.info({ socketPath: this.socketPath }, 'dev-agent: serving the Delegated Identity API');
    }
    if (!answering && this.endpoint !== null) {
      const endpoint = this.endpoint;
      this.endpoint = null;
      this.hub.endAll(status.UNAVAILABLE, 'dev-agent: agent is not answering');
      await endpoint.close();
      this.logger.info({ socketPath: this.socketPath }, 'dev-agent: stopped answering');
    }
  }

  async rotateNow(): Promise<void> {
    return this.serialize(async () => this.svids.invalidateAll());
  }

  /** New CA signs new SVIDs (all reissued now); the bundle holds old and new roots until dropOldCa(). */
  async rotateCa(): Promise<void> {
    return this.serialize(async () => {
      await this.store.rotate();
      this.svids.invalidateAll();
    });
  }

  async dropOldCa(): Promise<void> {
    return this.serialize(async () => void this.store.dropPrevious());
  }

  /**
   * New JWT signing key: it is published to the JWT bundle streams first and only then signs, so
   * validators never see a token before its key; the old key stays published until
   * dropOldJwtAuthority().
   */
  async rotateJwtAuthority(): Promise<void> {
    let next: JwtAuthority | undefined;
    await this.serialize(async () => {
      next = await this.store.prepareJwt();
    });
    await this.serialize(async () => this.store.activateJwt(next!));
  }

  /** Lifetime of JWT-SVIDs signed from now on (tests shorten it to watch refreshes). */
  setJwtSvidTtl(ttlMs: number): void {
    if (!(ttlMs >= 1000)) throw new RangeError(`dev-agent: JWT-SVID TTL must be at least 1 s, got ${ttlMs} ms`);
    this.jwtSvidTtlMs = ttlMs;
  }

  async dropOldJwtAuthority(): Promise<void> {
    return this.serialize(async () => void this.store.dropPreviousJwt());
  }

  async addFederatedTrustDomain(trustDomain: string): Promise<void> {
    return this.serialize(async () => void (await this.store.addFederated(trustDomain)));
  }

  async removeFederatedTrustDomain(trustDomain: string): Promise<void> {
    return this.serialize(async () => void this.store.removeFederated(trustDomain));
  }

  /** Entries only, or a whole registration set (whose federatedTrustDomains then replace the current ones). */
  async setRegistrations(registrations: Registrations | readonly RegistrationEntry[]): Promise<void> {
    return this.serialize(async () => {
      if (isEntryList(registrations)) {
        this.registrations = { ...this.registrations, entries: registrations };
        return;
      }
      this.registrations = registrations;
      await this.syncFederation(registrations.federatedTrustDomains);
    });
  }

  /** Re-reads the registration file; on error the current registrations stay and the error is thrown. */
  async reloadRegistrations(): Promise<void> {
    const file = this.options.registrationsFile;
    if (file === undefined) throw new Error('dev-agent: no registration file was configured');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new RegistrationError(`cannot read ${file}: ${(error as Error).message}`);
    }
    const registrations = parseRegistrations(text, this.trustDomain);
    this.logger.info({ file, entries: registrations.entries.length }, 'dev-agent: registrations loaded');
    await this.setRegistrations(registrations);
  }

  /** true: end every stream with PermissionDenied and refuse new ones. */
  async setDenyAll(deny: boolean): Promise<void> {
    this.denyAll = deny;
    if (deny) this.hub.endAll(status.PERMISSION_DENIED, NOT_A_DELEGATE);
  }

  private get store(): TrustStore {
    if (this.trust === null) throw new Error('dev-agent: not started');
    return this.trust;
  }

  private async syncFederation(wanted: readonly string[]): Promise<void> {
    for (const td of this.store.federatedTrustDomains()) if (!wanted.includes(td)) this.store.removeFederated(td);
    for (const td of wanted) await this.store.addFederated(td);
  }

  /** Runs a change and the push it causes after every earlier one, so streams see changes in order. */
  private serialize(change: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      await change();
      await this.push();
    });
    this.queue = run.catch((error: unknown) => this.logger.error({ err: error }, 'dev-agent: update failed'));
    return run;
  }

  /** A push with no change of its own (new subscriber, rotation due): coalesced with one already waiting. */
  private requestPush(): Promise<void> {
    // Failures are logged by serialize(); callers of a coalesced push have nothing to handle.
    this.queuedPush ??= this.serialize(async () => {
      this.queuedPush = null;
    }).catch(() => {});
    return this.queuedPush;
  }

  private async push(): Promise<void> {
    if (this.trust === null) return;
    await this.hub.push({ trust: this.trust, registrations: this.registrations, svids: this.svids });
    this.scheduleRotation();
  }

  private scheduleRotation(): void {
    if (this.rotationTimer !== null) clearTimeout(this.rotationTimer);
    this.rotationTimer = null;
    const at = this.svids.nextRotationAt();
    if (at === null || this.stopped) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.now()));
    this.rotationTimer = setTimeout(() => void this.requestPush(), delay);
    this.rotationTimer.unref();
  }

  private handlers(): UntypedServiceImplementation {
    return {
      SubscribeToX509SVIDs: (call: SvidCall) => {
        if (this.refuse(call)) return;
        const checked = checkSvidRequest(call.request);
        if (!Array.isArray(checked)) return endWithStatus(call, checked.code, checked.details);
        this.hub.addSvidStream(call, checked);
        void this.requestPush();
      },
      SubscribeToX509Bundles: (call: BundleCall) => {
        if (this.refuse(call)) return;
        this.hub.addBundleStream(call);
        void this.requestPush();
      },
      FetchJWTSVIDs: (
        call: ServerUnaryCall<WireFetchJwtSvidsRequest, WireFetchJwtSvidsResponse>,
        callback: sendUnaryData<WireFetchJwtSvidsResponse>,
      ) => {
        if (this.denyAll) return callback({ code: status.PERMISSION_DENIED, details: NOT_A_DELEGATE });
        const checked = checkJwtSvidRequest(call.request);
        if ('code' in checked) return callback({ code: checked.code, details: checked.details });
        this.issueJwtSvids(checked).then(
          (response) => callback(null, response),
          (error: unknown) => {
            this.logger.error({ err: (error as Error).message }, 'dev-agent: issuing JWT-SVIDs failed');
            callback({ code: status.INTERNAL, details: 'dev-agent: issuing JWT-SVIDs failed' });
          },
        );
      },
      SubscribeToJWTBundles: (call: JwtBundleCall) => {
        if (this.refuse(call)) return;
        this.hub.addJwtBundleStream(call);
        void this.requestPush();
      },
    };
  }

  /** One fresh token per matching entry, like SPIRE's FetchJWTSVIDs (an empty list when none match). */
  private async issueJwtSvids(request: JwtSvidRequest): Promise<WireFetchJwtSvidsResponse> {
    const entries = matchEntries(this.registrations.entries, request.selectors);
    const signer = this.store.currentJwtAuthority;
    const now = this.now();
    const svids = await Promise.all(
      entries.map(async (entry) => jwtSvidToWire(entry, await signer.issue(entry.spiffeId, request.audiences, this.jwtSvidTtlMs, now))),
    );
    this.logger.debug({ ids: entries.map((e) => e.spiffeId), audiences: request.audiences }, 'dev-agent: issued JWT-SVIDs');
    return { svids };
  }

  private refuse(call: ServerWritableStream<unknown, unknown>): boolean {
    if (!this.denyAll) return false;
    endWithStatus(call, status.PERMISSION_DENIED, NOT_A_DELEGATE);
    return true;
  }
}

function isEntryList(value: Registrations | readonly RegistrationEntry[]): value is readonly RegistrationEntry[] {
  return Array.isArray(value);
}
