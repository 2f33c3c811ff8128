import { readFile } from 'node:fs/promises';
import { status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { silentLogger, type Logger } from '@spire-csi/sdk/internal';
import { loadProtos, type WireFetchJwtSvidsResponse } from '@spire-csi/driver/internal';
import { checkedId, resolveAgentIds } from './agent-ids.js';
import type { IssuedSvid } from './ca.js';
import type { BrokerFault, BrokerFaultMatch } from './broker-faults.js';
import type { BrokerStreamCounts } from './broker-hub.js';
import type { BrokerAuthz } from './broker-service.js';
import { delegatedHandlers, NOT_A_DELEGATE } from './delegated-service.js';
import { watchFile } from './file-watch.js';
import { UnixGrpcEndpoint } from './grpc-endpoint.js';
import type { JwtAuthority } from './jwt-authority.js';
import { readPodsFile, validatePods, type Pod } from './pods.js';
import { parseRegistrations, RegistrationError, type RegistrationEntry, type Registrations } from './registrations.js';
import { matchEntries } from './matcher.js';
import { jwtSvidToWire, type JwtSvidRequest } from './responses.js';
import { StreamHub } from './stream-hub.js';
import { SpiffeEndpoints } from './spiffe-endpoints.js';
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
  /** Serve the SPIFFE Workload API (the driver's own identity, workloadId) on this socket. Off when unset. */
  readonly workloadSocketPath?: string;
  /** The identity the Workload API serves. Default `spiffe://<td>/ns/spire-csi/sa/spire-csi-driver`. */
  readonly workloadId?: string;
  /** Serve the SPIFFE Broker API (mutual TLS) on this socket. Off when unset. */
  readonly brokerSocketPath?: string;
  /** The SPIFFE ID the Broker endpoint presents. Default `spiffe://<td>/spire/agent/dev`. */
  readonly brokerServerId?: string;
  /** SPIFFE IDs allowed to use the Broker API. Default: [workloadId]. */
  readonly brokers?: readonly string[];
  /** Where a client not in `brokers` is refused: per call with PermissionDenied (default) or in the TLS handshake, as SPIRE does. */
  readonly brokerAuthz?: BrokerAuthz;
  /** The pods the agent sees on its node (what broker references resolve to). */
  readonly pods?: readonly Pod[];
  /** A JSON array of pods, read at start() and on every change; wins over `pods`. */
  readonly podsFile?: string;
  /** Attach google.rpc.ErrorInfo (domain spiffe.io) to the Broker endpoint's reference errors. Default true. */
  readonly errorInfo?: boolean;
  /** The node the agent runs on: adds a `k8s:node-name:` selector to every pod. */
  readonly nodeName?: string;
}

const BANNER = '*** spire-csi dev-agent: DEVELOPMENT ONLY — NOT A SPIRE AGENT, do not use in production ***';
const NOT_ANSWERING = 'dev-agent: agent is not answering';
const MAX_TIMER_MS = 2_147_483_647;
export const DEFAULT_JWT_SVID_TTL_MS = 5 * 60_000;

/**
 * A development stand-in for a SPIRE agent's admin socket: it serves the real Delegated Identity
 * API from an in-memory CA and a registration file, with knobs tests need (rotate, federate, go
 * down, deny). Optionally also the SPIFFE Workload API (the driver's own SVID) and a SPIFFE Broker
 * endpoint (mutual TLS, pod references resolved against a pod list), fed by the same CA,
 * registrations and pushes. Every mutator resolves once the resulting updates have been written
 * to the streams.
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
  private readonly spiffe: SpiffeEndpoints;
  private podsWatcher: { close(): void } | null = null;
  readonly workloadId: string;
  readonly brokerServerId: string;
  readonly brokers: readonly string[];

  constructor(private readonly options: DevAgentOptions) {
    this.trustDomain = options.trustDomain;
    this.logger = options.logger ?? silentLogger;
    this.now = options.clock ? () => options.clock!.now() : Date.now;
    this.svidTtlMs = options.svidTtlMs ?? 3_600_000;
    this.jwtSvidTtlMs = options.jwtSvidTtlMs ?? DEFAULT_JWT_SVID_TTL_MS;
    this.registrations = options.registrations ?? { entries: [], federatedTrustDomains: [] };
    this.denyAll = options.denyAll ?? false;
    this.svids = new SvidCache((entry) => this.store.current.issueSvid(entry.spiffeId, this.svidTtlMs), this.now);
    ({ workloadId: this.workloadId, brokerServerId: this.brokerServerId, brokers: this.brokers } = resolveAgentIds(options, this.trustDomain));
    this.spiffe = new SpiffeEndpoints({
      workloadSocketPath: options.workloadSocketPath,
      workloadId: this.workloadId,
      brokerSocketPath: options.brokerSocketPath,
      brokerServerId: this.brokerServerId,
      brokers: this.brokers,
      brokerAuthz: options.brokerAuthz ?? 'call',
      errorInfo: options.errorInfo ?? true,
      nodeName: options.nodeName,
      protoDir: options.protoDir,
      logger: this.logger,
      now: this.now,
      issueSvid: (id) => this.store.current.issueSvid(id, this.svidTtlMs),
      issueJwtSvid: (id, audiences) => this.store.currentJwtAuthority.issue(id, audiences, this.jwtSvidTtlMs, this.now()),
      requestPush: () => void this.requestPush(),
      registrations: () => this.registrations,
    });
    this.spiffe.setPods(validatePods(options.pods ?? []));
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

  get workloadSocketPath(): string | undefined {
    return this.options.workloadSocketPath;
  }

  get brokerSocketPath(): string | undefined {
    return this.options.brokerSocketPath;
  }

  /** Open Workload API streams (all three kinds). */
  get workloadStreamCount(): number {
    return this.spiffe.workloadStreamCount;
  }

  /** Open Broker API streams by kind. */
  get brokerStreamCounts(): BrokerStreamCounts {
    return this.spiffe.brokerStreamCounts;
  }

  /** Open Broker API streams, all kinds. */
  get brokerStreamCount(): number {
    return this.spiffe.brokerStreamCount;
  }

  /** The driver's SVID as the Workload API currently serves it (undefined when that socket is off). */
  get workloadSvid(): IssuedSvid | undefined {
    return this.spiffe.currentSvid('workload');
  }

  /** The SVID the Broker endpoint currently presents (undefined when that socket is off). */
  get brokerServerSvid(): IssuedSvid | undefined {
    return this.spiffe.currentSvid('brokerServer');
  }

  /** The pods broker references currently resolve against. */
  get pods(): readonly Pod[] {
    return this.spiffe.currentPods();
  }

  /**
   * An X509-SVID for any ID from the agent's current CA, outside the registrations: tests use it
   * for broker clients (one on the `brokers` list, one not). The key is in the result: keep it in
   * memory.
   */
  async issueSvid(spiffeId: string, ttlMs: number = this.svidTtlMs): Promise<IssuedSvid> {
    return this.store.current.issueSvid(checkedId(spiffeId, 'spiffeId'), ttlMs);
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
    if (this.options.podsFile !== undefined) {
      await this.reloadPods();
      this.watchPods(this.options.podsFile);
    }
    // The Broker endpoint's TLS needs its SVID before the socket opens: a push issues it.
    if (this.spiffe.enabled) await this.serialize(async () => {});
    await this.setAnswering(true);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.podsWatcher?.close();
    this.podsWatcher = null;
    if (this.rotationTimer !== null) clearTimeout(this.rotationTimer);
    this.rotationTimer = null;
    await this.setAnswering(false);
    await this.queue;
  }

  /**
   * false: end every stream with Unavailable and close the sockets (admin, Workload API, Broker),
   * like an agent that went down; true: serve them again.
   */
  async setAnswering(answering: boolean): Promise<void> {
    if (answering && !this.stopped && this.endpoint === null) {
      const { DelegatedIdentity } = loadProtos(this.options.protoDir).delegatedIdentity;
      this.endpoint = await UnixGrpcEndpoint.listen(this.socketPath, DelegatedIdentity.service, this.handlers());
      this.logger.info({ socketPath: this.socketPath }, 'dev-agent: serving the Delegated Identity API');
    }
    if (answering && !this.stopped) await this.spiffe.open();
    if (!answering && this.endpoint !== null) {
      const endpoint = this.endpoint;
      this.endpoint = null;
      this.hub.endAll(status.UNAVAILABLE, NOT_ANSWERING);
      await Promise.all([endpoint.close(), this.spiffe.close(status.UNAVAILABLE, NOT_ANSWERING)]);
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
      this.spiffe.rotateAll();
    });
  }

  /** Reissues the driver's own SVID (the Workload API streams get it); the pods' SVIDs stay. */
  async rotateWorkloadSvid(): Promise<void> {
    return this.serialize(async () => this.spiffe.rotate('workload'));
  }

  /** Reissues the SVID the Broker endpoint presents; new handshakes use it, open connections stay. */
  async rotateBrokerServerSvid(): Promise<void> {
    return this.serialize(async () => this.spiffe.rotate('brokerServer'));
  }

  /** Replaces the pod list; broker streams of pods no longer listed end (OK), the others get their new state. */
  async setPods(pods: readonly Pod[]): Promise<void> {
    const checked = validatePods(pods);
    return this.serialize(async () => this.spiffe.setPods(checked));
  }

  /** Re-reads the pods file; on error the current list stays and the error (a PodListError) is thrown. */
  async reloadPods(): Promise<void> {
    const file = this.options.podsFile;
    if (file === undefined) throw new Error('dev-agent: no pods file was configured');
    const pods = await readPodsFile(file);
    this.logger.info({ file, pods: pods.length }, 'dev-agent: pods loaded');
    await this.serialize(async () => this.spiffe.setPods(pods));
  }

  /**
   * From now on, calls to the Broker endpoint for the matching pods (`'all'` or `{}`: every call)
   * fail with `fault` (after the security header check), until cleared with `undefined`. For
   * Unavailable, Unauthenticated ("workload attestation failed: ..."), NotFound and the like.
   */
  injectBrokerError(match: BrokerFaultMatch, fault: BrokerFault | undefined): void {
    this.spiffe.injectFault(match, fault);
  }

  /** Ends the open broker streams of the matching pods now with `fault`'s status. */
  endBrokerStreams(match: BrokerFaultMatch, fault: BrokerFault): void {
    this.spiffe.endStreams(match, fault);
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
    const state = { trust: this.trust, registrations: this.registrations, svids: this.svids };
    await this.hub.push(state);
    if (this.spiffe.enabled) {
      const issued = this.svids.issuedCount;
      await this.spiffe.push(state);
      // A pod SVID fell due between the two passes and the broker pass reissued it: the delegated
      // streams must get it too, and the next push sees the new issuance and visits them all.
      if (this.svids.issuedCount !== issued) void this.requestPush();
    }
    this.scheduleRotation();
  }

  private watchPods(file: string): void {
    this.podsWatcher ??= watchFile(
      file,
      () =>
        this.reloadPods().catch((error: unknown) => {
          this.logger.error({ file }, `dev-agent: pods reload failed, keeping the previous list: ${(error as Error).message}`);
        }),
      (error) => this.logger.error({ file, err: error.message }, 'dev-agent: cannot watch the pods file any more; SIGHUP still reloads it'),
    );
  }

  private scheduleRotation(): void {
    if (this.rotationTimer !== null) clearTimeout(this.rotationTimer);
    this.rotationTimer = null;
    const at = earliest(this.svids.nextRotationAt(), this.spiffe.nextRotationAt());
    if (at === null || this.stopped) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.now()));
    this.rotationTimer = setTimeout(() => void this.requestPush(), delay);
    this.rotationTimer.unref();
  }

  private handlers(): UntypedServiceImplementation {
    return delegatedHandlers({
      hub: this.hub,
      logger: this.logger,
      denyAll: () => this.denyAll,
      requestPush: () => void this.requestPush(),
      issueJwtSvids: (request) => this.issueJwtSvids(request),
    });
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
}

function earliest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  return b === null ? a : Math.min(a, b);
}

function isEntryList(value: Registrations | readonly RegistrationEntry[]): value is readonly RegistrationEntry[] {
  return Array.isArray(value);
}
