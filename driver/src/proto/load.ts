import { existsSync } from 'node:fs';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { ownConcat } from '@spire-csi/sdk/internal';

/** Files loaded, relative to the proto directory (their import paths resolve from the same root). */
export const PROTO_FILES = [
  'csi/csi.proto',
  'spire/api/agent/delegatedidentity/v1/delegatedidentity.proto',
  'spiffe/workload/workload.proto',
] as const;

/** The SPIFFE Broker API, loaded apart (loadBrokerProtos): only broker mode pays for parsing it. */
export const BROKER_PROTO_FILE = 'spiffe/broker/brokerapi.proto';

/** A file whose presence marks a folder as our proto root (the source tree has a `proto` code folder too). */
const MARKER = 'csi/csi.proto';

/**
 * Wire-object conventions every caller relies on: snake_case names as in the .proto, int64 as
 * decimal strings (lossless), enums by name, bytes as Buffer, unset scalars filled with defaults
 * and a virtual property naming the set member of each oneof.
 */
export const PROTO_LOADER_OPTIONS: Readonly<Options> = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
});

export interface CsiPackage {
  readonly Identity: ServiceClientConstructor;
  readonly Node: ServiceClientConstructor;
  readonly Controller: ServiceClientConstructor;
}

export interface DelegatedIdentityPackage {
  readonly DelegatedIdentity: ServiceClientConstructor;
}

export interface WorkloadPackage {
  readonly SpiffeWorkloadAPI: ServiceClientConstructor;
}

export interface BrokerPackage {
  /** `spiffe.broker.API`. */
  readonly API: ServiceClientConstructor;
  /**
   * `spiffe.broker.KubernetesObjectReference` as a protobufjs type: the request carries it packed
   * into a google.protobuf.Any, whose `value` is these encoded bytes.
   */
  readonly KubernetesObjectReference: protobuf.Type;
}

export interface LoadedProtos {
  /** `csi.v1`. */
  readonly csi: CsiPackage;
  /** `spire.api.agent.delegatedidentity.v1`. */
  readonly delegatedIdentity: DelegatedIdentityPackage;
  /** The SPIFFE Workload API (its proto has no package: service path `/SpiffeWorkloadAPI/...`). */
  readonly workload: WorkloadPackage;
  /** Raw definitions, e.g. to inspect message descriptors. */
  readonly definition: PackageDefinition;
}

export class ProtoLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`proto: ${message}`, options);
    this.name = 'ProtoLoadError';
  }
}

/**
 * Finds the folder holding the wire definitions: `proto/` next to the module's folder (the built
 * bundle runs from dist/ and ships dist/proto), else in an ancestor (the repository root when
 * running from sources). Only `<ancestor>/proto` folders are considered, so nothing outside the
 * package or repository tree that holds this module is ever picked up by accident of layout.
 */
export function defaultProtoDir(moduleUrl: string = import.meta.url): string {
  const checked: string[] = [];
  let dir = dirname(fileURLToPath(moduleUrl));
  const root = parse(dir).root;
  for (;;) {
    const candidate = join(dir, 'proto');
    checked.push(candidate);
    if (existsSync(join(candidate, MARKER))) return candidate;
    if (dir === root) break;
    dir = dirname(dir);
  }
  throw new ProtoLoadError(
    `no proto folder containing ${MARKER} found; looked in ${checked.join(', ')}. ` +
      'Build the driver (which copies proto/ to dist/proto) or pass the folder explicitly.',
  );
}

/** Loads the CSI, Delegated Identity and Workload API services; the result is immutable. */
export function loadProtos(protoDir: string = defaultProtoDir()): LoadedProtos {
  if (!existsSync(join(protoDir, MARKER))) {
    throw new ProtoLoadError(`${protoDir} is not a proto folder: ${MARKER} is missing`);
  }
  let definition: PackageDefinition;
  try {
    // google/protobuf/* imports resolve to the copies bundled with protobufjs / proto-loader.
    definition = loadSync([...PROTO_FILES], { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir] });
  } catch (err) {
    throw new ProtoLoadError(`cannot load ${PROTO_FILES.join(', ')} from ${protoDir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const grpcObject = loadPackageDefinition(ownRequestBuffers(definition));
  return Object.freeze({
    csi: Object.freeze({
      Identity: service(grpcObject, 'csi.v1.Identity'),
      Node: service(grpcObject, 'csi.v1.Node'),
      Controller: service(grpcObject, 'csi.v1.Controller'),
    }),
    delegatedIdentity: Object.freeze({
      DelegatedIdentity: service(grpcObject, 'spire.api.agent.delegatedidentity.v1.DelegatedIdentity'),
    }),
    workload: Object.freeze({ SpiffeWorkloadAPI: service(grpcObject, 'SpiffeWorkloadAPI') }),
    definition,
  });
}

const brokerProtos = new Map<string, BrokerPackage>();

/** The SPIFFE Broker API service and its reference type, loaded once per folder. */
export function loadBrokerProtos(protoDir: string = defaultProtoDir()): BrokerPackage {
  const cached = brokerProtos.get(protoDir);
  if (cached !== undefined) return cached;
  let loaded: BrokerPackage;
  try {
    // google/protobuf/any.proto resolves to the copies bundled with protobufjs / proto-loader.
    const grpcObject = loadPackageDefinition(ownRequestBuffers(loadSync([BROKER_PROTO_FILE], { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir] })));
    const reference = protobuf.loadSync(join(protoDir, BROKER_PROTO_FILE)).lookupType('spiffe.broker.KubernetesObjectReference');
    loaded = Object.freeze({ API: service(grpcObject, 'spiffe.broker.API'), KubernetesObjectReference: reference });
  } catch (err) {
    if (err instanceof ProtoLoadError) throw err;
    throw new ProtoLoadError(`cannot load ${BROKER_PROTO_FILE} from ${protoDir}: ${(err as Error).message}`, { cause: err });
  }
  brokerProtos.set(protoDir, loaded);
  return loaded;
}

/**
 * Serialized requests in memory blocks of their own. grpc-js keeps a streaming call's request for
 * as long as the stream lives, and protobufjs encodes small messages into slices of Buffer's shared
 * 8 KiB pool, so each volume's open SVID stream pinned a whole slab (~4 MiB at 1,000 volumes).
 */
function ownRequestBuffers(definition: PackageDefinition): PackageDefinition {
  for (const entry of Object.values(definition)) {
    // Message and enum definitions carry a `format`; services are maps of methods.
    if ('format' in entry) continue;
    for (const method of Object.values(entry as Record<string, { requestSerialize?: (value: unknown) => Buffer }>)) {
      const serialize = method.requestSerialize;
      if (typeof serialize !== 'function') continue;
      method.requestSerialize = (value: unknown): Buffer => ownConcat([serialize(value)]);
    }
  }
  return definition;
}

function service(root: GrpcObject, fullName: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of fullName.split('.')) {
    node = (node as Record<string, unknown> | undefined)?.[part];
  }
  if (typeof node !== 'function' || !('service' in node)) {
    throw new ProtoLoadError(`service ${fullName} is missing from the loaded definitions`);
  }
  return node as ServiceClientConstructor;
}
