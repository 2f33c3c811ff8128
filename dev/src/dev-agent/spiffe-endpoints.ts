import type { status } from '@grpc/grpc-js';
import type { Logger } from '@spire-csi/sdk';
import { AgentIdentities, type AgentIdentityName } from './agent-identities.js';
import type { IssuedSvid } from './ca.js';
import { BrokerFaults, type BrokerFault, type BrokerFaultMatch } from './broker-faults.js';
import { BrokerHub, type BrokerStreamCounts } from './broker-hub.js';
import { brokerHandlers, type BrokerAuthz } from './broker-service.js';
import { brokerStatus } from './broker-status.js';
import { BrokerTls } from './broker-tls.js';
import { UnixGrpcEndpoint } from './grpc-endpoint.js';
import type { IssuedJwtSvid } from './jwt-authority.js';
import { matchEntries } from './matcher.js';
import { podSelectors, type Pod } from './pods.js';
import { loadAgentProtos, type AgentProtos } from './protos.js';
import type { WireSpiffeJwtSvid } from './spiffe-responses.js';
import type { Registrations } from './registrations.js';
import type { AgentState } from './stream-hub.js';
import { WorkloadApi } from './workload-api.js';

export interface SpiffeEndpointsConfig {
  /** Serve the Workload API here; off when undefined. */
  readonly workloadSocketPath: string | undefined;
  readonly workloadId: string;
  /** Serve the Broker endpoint here; off when undefined. */
  readonly brokerSocketPath: string | undefined;
  readonly brokerServerId: string;
  readonly brokers: readonly string[];
  readonly brokerAuthz: BrokerAuthz;
  readonly errorInfo: boolean;
  readonly nodeName: string | undefined;
  readonly protoDir: string | undefined;
  readonly logger: Logger;
  readonly now: () => number;
  /** Issues an X509-SVID from the agent's current CA. */
  issueSvid(spiffeId: string): Promise<IssuedSvid>;
  /** Signs a JWT-SVID with the agent's current JWT key. */
  issueJwtSvid(spiffeId: string, audiences: string[]): Promise<IssuedJwtSvid>;
  /** Asks the agent for a push (new subscribers' first message). */
  requestPush(): void;
  registrations(): Registrations;
}

/**
 * The dev agent's two SPIFFE-standard sockets next to its admin socket: the Workload API serving
 * the driver's own SVID, and the Broker endpoint (mutual TLS) resolving pod references. They share
 * the agent's CA, registrations, SVID cache and push: one change reaches every API's streams.
 */
export class SpiffeEndpoints {
  private readonly identities: AgentIdentities;
  private readonly workloadApi: WorkloadApi | null;
  private readonly brokerHub = new BrokerHub();
  private readonly faults = new BrokerFaults();
  private readonly tls = new BrokerTls();
  private readonly brokerSet: ReadonlySet<string>;
  private workloadEndpoint: UnixGrpcEndpoint | null = null;
  private brokerEndpoint: UnixGrpcEndpoint | null = null;
  private pods: readonly Pod[] = [];
  private protosLoaded: AgentProtos | null = null;

  constructor(private readonly config: SpiffeEndpointsConfig) {
    const ids: Partial<Record<AgentIdentityName, string>> = {};
    if (config.workloadSocketPath !== undefined) ids.workload = config.workloadId;
    if (config.brokerSocketPath !== undefined) ids.brokerServer = config.brokerServerId;
    this.identities = new AgentIdentities(ids, (id) => config.issueSvid(id), config.now);
    this.brokerSet = new Set(config.brokers);
    const workloadEntry = this.identities.entry('workload');
    this.workloadApi = workloadEntry
      ? new WorkloadApi({
          entry: workloadEntry,
          logger: config.logger,
          requestPush: () => config.requestPush(),
          issueJwtSvid: (audiences) => config.issueJwtSvid(config.workloadId, audiences),
        })
      : null;
  }

  /** Whether either socket is configured (otherwise the agent is exactly the delegated-only agent). */
  get enabled(): boolean {
    return this.config.workloadSocketPath !== undefined || this.config.brokerSocketPath !== undefined;
  }

  get workloadStreamCount(): number {
    return this.workloadApi?.size ?? 0;
  }

  get brokerStreamCounts(): BrokerStreamCounts {
    return this.brokerHub.counts;
  }

  get brokerStreamCount(): number {
    return this.brokerHub.size;
  }

  currentSvid(name: AgentIdentityName): IssuedSvid | undefined {
    return this.identities.current(name);
  }

  currentPods(): readonly Pod[] {
    return this.pods;
  }

  setPods(pods: readonly Pod[]): void {
    this.pods = pods;
  }

  rotate(name: AgentIdentityName): void {
    this.identities.rotate(name);
  }

  rotateAll(): void {
    this.identities.rotateAll();
  }

  nextRotationAt(): number | null {
    return this.identities.nextRotationAt();
  }

  injectFault(match: BrokerFaultMatch, fault: BrokerFault | undefined): void {
    this.faults.set(match, fault);
  }

  /** Ends the open broker streams of the matching pods with `fault`'s status. */
  endStreams(match: BrokerFaultMatch, fault: BrokerFault): void {
    const uid = match === 'all' ? undefined : match.uid;
    const { code, details, metadata } = brokerStatus(fault, this.protos, this.config.errorInfo);
    this.brokerHub.end(code, details, (pod) => uid === undefined || pod.uid === uid, metadata);
  }

  /**
   * Brings everything up to date after a change: the agent's own SVIDs (reissued when due), the
   * broker server's TLS material, then every Workload API and broker stream.
   */
  async push(state: AgentState): Promise<void> {
    await this.identities.ensure();
    const workloadSvid = this.identities.current('workload');
    if (workloadSvid && this.workloadApi) this.workloadApi.push(workloadSvid, state.trust);
    const serverSvid = this.identities.current('brokerServer');
    if (serverSvid) this.tls.update(serverSvid, state.trust);
    await this.brokerHub.push({ ...state, pods: this.pods, nodeName: this.config.nodeName });
  }

  /** Opens the configured sockets that are closed. The first push must have run (it issues the server SVID). */
  async open(): Promise<void> {
    const { workloadSocketPath, brokerSocketPath, logger } = this.config;
    if (workloadSocketPath !== undefined && this.workloadEndpoint === null && this.workloadApi) {
      this.workloadEndpoint = await UnixGrpcEndpoint.listen(workloadSocketPath, this.protos.workload, this.workloadApi.handlers());
      logger.info({ socketPath: workloadSocketPath, spiffeId: this.config.workloadId }, 'dev-agent: serving the SPIFFE Workload API');
    }
    if (brokerSocketPath !== undefined && this.brokerEndpoint === null) {
      const { protos, tls } = this;
      this.brokerEndpoint =
        this.config.brokerAuthz === 'handshake'
          ? await UnixGrpcEndpoint.listenBehind(brokerSocketPath, protos.broker, this.brokerHandlers(), tls.handshakeFront(this.config.brokers, logger))
          : await UnixGrpcEndpoint.listen(brokerSocketPath, protos.broker, this.brokerHandlers(), tls.grpcCredentials(logger));
      logger.info(
        { socketPath: brokerSocketPath, spiffeId: this.config.brokerServerId, brokers: this.config.brokers, authz: this.config.brokerAuthz },
        'dev-agent: serving the SPIFFE Broker API (mutual TLS)',
      );
    }
  }

  /** Ends every stream with `code` and closes both sockets, like an agent that went down. */
  async close(code: status, details: string): Promise<void> {
    this.workloadApi?.endAll(code, details);
    this.brokerHub.end(code, details);
    const endpoints = [this.workloadEndpoint, this.brokerEndpoint];
    this.workloadEndpoint = null;
    this.brokerEndpoint = null;
    await Promise.all(endpoints.map((endpoint) => endpoint?.close()));
  }

  private get protos(): AgentProtos {
    this.protosLoaded ??= loadAgentProtos(this.config.protoDir);
    return this.protosLoaded;
  }

  private brokerHandlers() {
    return brokerHandlers({
      protos: this.protos,
      brokers: this.brokerSet,
      errorInfo: this.config.errorInfo,
      hub: this.brokerHub,
      faults: this.faults,
      logger: this.config.logger,
      callerId: (call) => this.tls.callerId(call),
      pods: () => this.pods,
      requestPush: () => this.config.requestPush(),
      issueJwtSvids: (pod, audiences, spiffeId) => this.issueJwtSvids(pod, audiences, spiffeId),
    });
  }

  /** One fresh token per entry matching the pod (only `spiffeId`'s when given), as SPIRE's FetchJWTSVID. */
  private async issueJwtSvids(pod: Pod, audiences: string[], spiffeId: string): Promise<WireSpiffeJwtSvid[]> {
    const entries = matchEntries(this.config.registrations().entries, podSelectors(pod, this.config.nodeName)).filter(
      (entry) => spiffeId === '' || entry.spiffeId === spiffeId,
    );
    return Promise.all(
      entries.map(async (entry) => ({
        spiffe_id: entry.spiffeId,
        svid: (await this.config.issueJwtSvid(entry.spiffeId, audiences)).token,
        hint: entry.hint,
      })),
    );
  }
}
