import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * The wire definitions the dev agent's Workload API and Broker endpoints need, beyond the ones the
 * driver's loader provides: the two services (for grpc-js) and the messages that travel packed in
 * a google.protobuf.Any (for protobufjs, which grpc-js leaves as raw bytes).
 */
export interface AgentProtos {
  /** `SpiffeWorkloadAPI` (no package). */
  readonly workload: ServiceDefinition;
  /** `spiffe.broker.API`. */
  readonly broker: ServiceDefinition;
  /** `spiffe.broker.KubernetesObjectReference`, the payload of a WorkloadReference. */
  readonly kubernetesObjectReference: protobuf.Type;
  /** `google.rpc.Status`, the `grpc-status-details-bin` trailer. */
  readonly status: protobuf.Type;
  /** `google.rpc.ErrorInfo`, packed in Status.details. */
  readonly errorInfo: protobuf.Type;
}

export const WORKLOAD_PROTO = 'spiffe/workload/workload.proto';
export const BROKER_PROTO = 'spiffe/broker/brokerapi.proto';
const RPC_PROTOS = ['google/rpc/status.proto', 'google/rpc/error_details.proto'] as const;

/** The driver's wire conventions (snake_case, int64 as strings, bytes as Buffer, defaults filled), so both sides read alike. */
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, bytes: Buffer, defaults: true, oneofs: true } as const;

const cache = new Map<string, AgentProtos>();

/** Loads once per folder; `protoDir` defaults to the repository's (or package's) `proto/`. */
export function loadAgentProtos(protoDir: string = findProtoDir()): AgentProtos {
  const cached = cache.get(protoDir);
  if (cached) return cached;
  for (const file of [WORKLOAD_PROTO, BROKER_PROTO, ...RPC_PROTOS]) {
    if (!existsSync(join(protoDir, file))) throw new Error(`dev-agent: ${join(protoDir, file)} is missing; pass the proto folder that holds it`);
  }
  const grpcObject = loadPackageDefinition(loadSync([WORKLOAD_PROTO, BROKER_PROTO], { ...LOADER_OPTIONS, includeDirs: [protoDir] }));
  const root = new protobuf.Root();
  // Imports resolve inside the proto folder; google/protobuf/* falls back to protobufjs's bundled copies.
  root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(protoDir, target));
  root.loadSync([BROKER_PROTO, ...RPC_PROTOS], { keepCase: true });
  root.resolveAll();
  const loaded: AgentProtos = Object.freeze({
    workload: (grpcObject.SpiffeWorkloadAPI as ServiceClientConstructor).service,
    broker: ((grpcObject.spiffe as Record<string, Record<string, unknown>>).broker!.API as ServiceClientConstructor).service,
    kubernetesObjectReference: root.lookupType('spiffe.broker.KubernetesObjectReference'),
    status: root.lookupType('google.rpc.Status'),
    errorInfo: root.lookupType('google.rpc.ErrorInfo'),
  });
  cache.set(protoDir, loaded);
  return loaded;
}

/** The nearest ancestor `proto/` holding the Broker API: the repository root from sources and from dev/dist. */
function findProtoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  const checked: string[] = [];
  for (;;) {
    const candidate = join(dir, 'proto');
    checked.push(candidate);
    if (existsSync(join(candidate, BROKER_PROTO))) return candidate;
    if (dir === parse(dir).root) break;
    dir = dirname(dir);
  }
  throw new Error(`dev-agent: no proto folder holding ${BROKER_PROTO}; looked in ${checked.join(', ')}. Pass protoDir.`);
}
