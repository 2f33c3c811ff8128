/**
 * The part of the SPIFFE Workload API this package speaks (FetchX509SVID), embedded as a protobuf.js
 * JSON descriptor rather than read from a .proto file: an installed package then never reads a
 * file outside its own folder, and the ESM and CJS builds need no path to find it. It transcribes
 * the same messages of proto/spiffe/workload/workload.proto (field names, numbers and types); a
 * test loads that file and checks both agree. Built on first use, so importing the subpath does no
 * protobuf work.
 */
import { fromJSON, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** `/SpiffeWorkloadAPI/FetchX509SVID`: the proto has no package. */
export const FETCH_X509_SVID_PATH = '/SpiffeWorkloadAPI/FetchX509SVID';

/** The security header every Workload API request carries (SPIFFE Workload Endpoint §3). */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

/** The messages and the one method, as protobuf.js JSON (the proto3 shape of workload.proto). */
export const WORKLOAD_API_DESCRIPTOR = {
  nested: {
    SpiffeWorkloadAPI: {
      methods: {
        FetchX509SVID: { requestType: 'X509SVIDRequest', responseType: 'X509SVIDResponse', responseStream: true },
      },
    },
    X509SVIDRequest: { fields: {} },
    X509SVIDResponse: {
      fields: {
        svids: { rule: 'repeated', type: 'X509SVID', id: 1 },
        crl: { rule: 'repeated', type: 'bytes', id: 2 },
        federated_bundles: { keyType: 'string', type: 'bytes', id: 3 },
      },
    },
    X509SVID: {
      fields: {
        spiffe_id: { type: 'string', id: 1 },
        x509_svid: { type: 'bytes', id: 2 },
        x509_svid_key: { type: 'bytes', id: 3 },
        bundle: { type: 'bytes', id: 4 },
        hint: { type: 'string', id: 5 },
      },
    },
  },
} as const;

/** snake_case as in the .proto, bytes as Buffer, unset fields filled with their defaults. */
export const WORKLOAD_API_LOADER_OPTIONS: Readonly<Options> = Object.freeze({ keepCase: true, bytes: Buffer, defaults: true });

/** One X509SVID message as decoded. */
export interface X509SvidMessage {
  readonly spiffe_id: string;
  readonly x509_svid: Buffer;
  readonly x509_svid_key: Buffer;
  readonly bundle: Buffer;
  readonly hint: string;
}

/** One X509SVIDResponse message as decoded. */
export interface X509SvidResponseMessage {
  readonly svids: readonly X509SvidMessage[];
  readonly crl: readonly Buffer[];
  readonly federated_bundles: Readonly<Record<string, Buffer>>;
}

/** How FetchX509SVID's messages are written and read. */
export interface FetchX509SvidCodec {
  readonly serialize: (request: Record<string, never>) => Buffer;
  readonly deserialize: (bytes: Buffer) => X509SvidResponseMessage;
}

let codec: FetchX509SvidCodec | undefined;

/** The FetchX509SVID codec, built once. */
export function fetchX509SvidCodec(): FetchX509SvidCodec {
  if (codec !== undefined) return codec;
  const definition: PackageDefinition = fromJSON(structuredClone(WORKLOAD_API_DESCRIPTOR) as Parameters<typeof fromJSON>[0], WORKLOAD_API_LOADER_OPTIONS);
  const service = definition['SpiffeWorkloadAPI'] as Record<string, { requestSerialize: (value: object) => Buffer; responseDeserialize: (bytes: Buffer) => object }>;
  const method = service['FetchX509SVID']!;
  codec = Object.freeze({
    serialize: (request: Record<string, never>) => method.requestSerialize(request),
    deserialize: (bytes: Buffer) => method.responseDeserialize(bytes) as X509SvidResponseMessage,
  });
  return codec;
}
