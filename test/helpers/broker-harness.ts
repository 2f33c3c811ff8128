/**
 * Fixtures for tests that talk to the dev agent's SPIFFE Workload API and Broker endpoint over
 * real unix sockets with real mutual TLS.
 *
 * - `startBrokerAgent(options?)` starts a DevAgent serving all three sockets (admin / Delegated
 *   Identity, Workload API, Broker) in a fresh tmp dir; `cleanup()` stops it and removes the dir.
 *   Defaults: trust domain `example.org` (TD), the driver's identity DRIVER_ID on the Workload
 *   API and as the only broker, the broker server presenting `spiffe://example.org/spire/agent/dev`
 *   (AGENT_ID), no pods, no registrations. Any DevAgentOptions can be overridden (pods,
 *   registrations, brokers, brokerAuthz, errorInfo, clock...).
 * - `brokerClientCredentials(agent, id)` mints an SVID for `id` from the agent's CA and returns
 *   grpc-js channel credentials presenting it (SDK `spiffeChannelCredentials`, server pinned to
 *   the agent's brokerServerId unless `expectServer` says otherwise).
 * - `rawBrokerClient(socket, credentials)`: a `spiffe.broker.API` client independent of the
 *   driver's; send `brokerMetadata()` with every call (the endpoint refuses calls without it).
 * - `podReference({namespace, name, uid})`: a WorkloadReference with a KubernetesObjectReference
 *   (`pods`/`core`) packed in its Any; empty namespace/name leaves the key out, empty uid the UID.
 * - `rawWorkloadClient(socket)` and `workloadMetadata()` for the Workload API (plaintext UDS).
 * - `errorInfoOf(status)`: the google.rpc.ErrorInfo in a failed call's trailers, if any.
 *
 * Record streams with `record()` from agent-harness.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  credentials as grpcCredentials,
  loadPackageDefinition,
  Metadata,
  type GrpcObject,
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceClientConstructor,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { authorizeId, type Authorizer } from '@spire-csi/sdk/authorize';
import { spiffeChannelCredentials } from '@spire-csi/sdk/grpc';
import { StaticSource } from '@spire-csi/sdk/source';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { DevAgent, type DevAgentOptions } from '../../dev/src/dev-agent/server.js';
import { loadAgentProtos } from '../../dev/src/dev-agent/protos.js';
import { KUBERNETES_OBJECT_REFERENCE_TYPE_URL } from '../../dev/src/dev-agent/pod-reference.js';
import type { Pod } from '../../dev/src/dev-agent/pods.js';
import { TD } from './agent-harness.js';
import type { WireWorkloadReference } from '../../driver/src/identity/broker/reference.js';
import type {
  WireBrokerX509Svid,
  WireFetchJwtSvidResponse as WireJwtSvidResponse,
  WireSubscribeToJwtBundlesResponse as WireBundlesResponse,
  WireSubscribeToX509SvidResponse as WireBrokerX509SvidResponse,
} from '../../driver/src/identity/broker/wire.js';

export { TD };
export const DRIVER_ID = `spiffe://${TD}/ns/spire-csi/sa/spire-csi-driver`;
export const AGENT_ID = `spiffe://${TD}/spire/agent/dev`;

export interface BrokerAgentFixture {
  readonly agent: DevAgent;
  readonly dir: string;
  readonly adminSocket: string;
  readonly workloadSocket: string;
  readonly brokerSocket: string;
  /** `unix:///…/api.sock`, as the driver's --workload-api takes it. */
  readonly workloadEndpoint: string;
  /** `unix:///…/broker.sock`, as the driver's --broker-endpoint takes it. */
  readonly brokerEndpoint: string;
  cleanup(): Promise<void>;
}

export async function startBrokerAgent(options: Partial<DevAgentOptions> = {}): Promise<BrokerAgentFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'spire-csi-broker-'));
  const adminSocket = join(dir, 'admin.sock');
  const workloadSocket = join(dir, 'api.sock');
  const brokerSocket = join(dir, 'broker.sock');
  let agent: DevAgent | undefined;
  try {
    agent = new DevAgent({ socketPath: adminSocket, trustDomain: TD, workloadSocketPath: workloadSocket, brokerSocketPath: brokerSocket, ...options });
    await agent.start();
  } catch (error) {
    await agent?.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const started = agent;
  return {
    agent: started,
    dir,
    adminSocket,
    workloadSocket,
    brokerSocket,
    workloadEndpoint: `unix://${workloadSocket}`,
    brokerEndpoint: `unix://${brokerSocket}`,
    async cleanup() {
      await started.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An X509Source holding an SVID for `spiffeId` minted by the agent's CA, and the agent's bundles. */
export async function agentIssuedSource(agent: DevAgent, spiffeId: string, ttlMs?: number): Promise<StaticSource> {
  const issued = await agent.issueSvid(spiffeId, ttlMs);
  return new StaticSource({ svid: X509Svid.fromDer(issued.chainDer, issued.keyDer), bundles: agentBundles(agent) });
}

export function agentBundles(agent: DevAgent): X509BundleSet {
  return new X509BundleSet(
    Object.entries(agent.caCertificates()).map(([id, der]) => X509Bundle.fromDer(id.slice('spiffe://'.length), der)),
  );
}

/** Channel credentials presenting a fresh SVID for `spiffeId`; the server must be `expectServer` (default the agent's brokerServerId). */
export async function brokerClientCredentials(
  agent: DevAgent,
  spiffeId: string,
  expectServer: Authorizer = authorizeId(agent.brokerServerId),
): Promise<ChannelCredentials> {
  return spiffeChannelCredentials(await agentIssuedSource(agent, spiffeId), { authorize: expectServer });
}

// ---- wire shapes: the driver's (snake_case, bytes as Buffer), under the names the tests use ----


export type { WireBrokerX509Svid, WireBrokerX509SvidResponse, WireBundlesResponse, WireJwtSvidResponse, WireWorkloadReference };

export interface RawBrokerClient extends Client {
  SubscribeToX509SVID(request: object, metadata?: Metadata): ClientReadableStream<WireBrokerX509SvidResponse>;
  SubscribeToX509Bundles(request: object, metadata?: Metadata): ClientReadableStream<WireBundlesResponse>;
  SubscribeToJWTBundles(request: object, metadata?: Metadata): ClientReadableStream<WireBundlesResponse>;
  FetchJWTSVID(
    request: object,
    metadata: Metadata,
    callback: (error: ServiceError | null, response?: WireJwtSvidResponse) => void,
  ): ClientUnaryCall;
}

export interface RawWorkloadClient extends Client {
  FetchX509SVID(request: object, metadata?: Metadata): ClientReadableStream<WireBrokerX509SvidResponse>;
  FetchX509Bundles(request: object, metadata?: Metadata): ClientReadableStream<WireBundlesResponse & { crl: Buffer[] }>;
  FetchJWTBundles(request: object, metadata?: Metadata): ClientReadableStream<WireBundlesResponse>;
  FetchJWTSVID(
    request: object,
    metadata: Metadata,
    callback: (error: ServiceError | null, response?: WireJwtSvidResponse) => void,
  ): ClientUnaryCall;
}

export function rawBrokerClient(socket: string, credentials: ChannelCredentials): RawBrokerClient {
  const API = service(['spiffe', 'broker', 'API']);
  return new API(`unix:${socket}`, credentials) as unknown as RawBrokerClient;
}

export function rawWorkloadClient(socket: string): RawWorkloadClient {
  const SpiffeWorkloadAPI = service(['SpiffeWorkloadAPI']);
  return new SpiffeWorkloadAPI(`unix:${socket}`, grpcCredentials.createInsecure()) as unknown as RawWorkloadClient;
}

/** `broker.spiffe.io: true`, which every Broker API request must carry. */
export function brokerMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set('broker.spiffe.io', 'true');
  return metadata;
}

/** `workload.spiffe.io: true`, which every Workload API request must carry. */
export function workloadMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set('workload.spiffe.io', 'true');
  return metadata;
}

export interface PodReferenceInput {
  readonly namespace?: string;
  readonly name?: string;
  readonly uid?: string;
  /** Default `{plural: 'pods', group: 'core'}`; null leaves the type out. */
  readonly type?: { plural: string; group: string } | null;
}

/** A WorkloadReference naming a pod, its KubernetesObjectReference packed in the Any as a real client would. */
export function podReference(input: PodReferenceInput | Pod): WireWorkloadReference {
  const type = 'type' in input ? input.type : { plural: 'pods', group: 'core' };
  const { namespace = '', name = '', uid = '' } = input;
  const Reference = loadAgentProtos().kubernetesObjectReference;
  const object: Record<string, unknown> = { uid };
  if (type !== null && type !== undefined) object.type = type;
  if (namespace !== '' || name !== '') object.key = { namespace, name };
  const value = Buffer.from(Reference.encode(Reference.fromObject(object)).finish());
  return { reference: { type_url: KUBERNETES_OBJECT_REFERENCE_TYPE_URL, value } };
}

/** The google.rpc.ErrorInfo a failed call carried in `grpc-status-details-bin`, if any. */
export function errorInfoOf(
  failure: Pick<StatusObject, 'metadata'> | ServiceError | null,
): { reason: string; domain: string; metadata: Record<string, string> } | undefined {
  const raw = failure?.metadata?.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(raw)) return undefined;
  const { status: Status, errorInfo: ErrorInfo } = loadAgentProtos();
  const decoded = Status.toObject(Status.decode(raw), { defaults: true }) as { details: { type_url: string; value: Uint8Array }[] };
  const detail = decoded.details.find((d) => d.type_url === 'type.googleapis.com/google.rpc.ErrorInfo');
  if (!detail) return undefined;
  return ErrorInfo.toObject(ErrorInfo.decode(detail.value), { defaults: true }) as {
    reason: string;
    domain: string;
    metadata: Record<string, string>;
  };
}

const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));
let grpcObject: GrpcObject | undefined;

/** Client stubs loaded here, not through the dev agent's loader, so a wire mistake there shows. */
function service(path: readonly string[]): ServiceClientConstructor {
  grpcObject ??= loadPackageDefinition(
    loadSync(['spiffe/workload/workload.proto', 'spiffe/broker/brokerapi.proto'], {
      keepCase: true,
      longs: String,
      enums: String,
      bytes: Buffer,
      defaults: true,
      oneofs: true,
      includeDirs: [PROTO_DIR],
    }),
  );
  let node: unknown = grpcObject;
  for (const part of path) node = (node as Record<string, unknown>)[part];
  return node as ServiceClientConstructor;
}
