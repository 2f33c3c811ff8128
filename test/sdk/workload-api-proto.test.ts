/**
 * The SDK embeds the FetchX509SVID part of the Workload API as a protobuf.js descriptor (an
 * installed package reads no .proto file). This checks it against proto/spiffe/workload/workload.proto
 * field by field, and that a message encoded with the real proto decodes with the embedded one.
 */
import { fromJSON, type PackageDefinition } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { fetchX509SvidCodec, WORKLOAD_API_DESCRIPTOR, WORKLOAD_API_LOADER_OPTIONS } from '../../sdk/src/workload-api/workload-proto.js';
import { loadWorkloadProto } from '../helpers/workload-api-server.js';

interface FieldShape {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}

interface MessageShape {
  field: FieldShape[];
  nestedType: MessageShape[];
  name: string;
}

function shapeOf(type: MessageShape): unknown {
  return {
    fields: type.field.map(({ name, number, label, type, typeName }) => ({ name, number, label, type, typeName })),
    // Map fields are nested entry messages (federated_bundles).
    nested: type.nestedType.map((nested) => ({ name: nested.name, ...(shapeOf(nested) as object) })),
  };
}

function fieldsOf(definition: PackageDefinition, name: string): unknown {
  return shapeOf((definition[name] as { type: MessageShape }).type);
}

describe('the embedded Workload API descriptor', () => {
  const real = loadWorkloadProto();
  const embedded = fromJSON(structuredClone(WORKLOAD_API_DESCRIPTOR) as Parameters<typeof fromJSON>[0], WORKLOAD_API_LOADER_OPTIONS);

  it.each(['X509SVIDRequest', 'X509SVIDResponse', 'X509SVID'])('%s has the fields of workload.proto', (name) => {
    expect(fieldsOf(embedded, name)).toEqual(fieldsOf(real, name));
  });

  it('FetchX509SVID has the same path and streaming shape', () => {
    const pick = (definition: PackageDefinition): unknown => {
      const method = (definition['SpiffeWorkloadAPI'] as Record<string, { path: string; requestStream: boolean; responseStream: boolean }>)['FetchX509SVID']!;
      return { path: method.path, requestStream: method.requestStream, responseStream: method.responseStream };
    };
    expect(pick(embedded)).toEqual(pick(real));
    expect(pick(embedded)).toEqual({ path: '/SpiffeWorkloadAPI/FetchX509SVID', requestStream: false, responseStream: true });
  });

  it('decodes what the real proto encodes', () => {
    const service = real['SpiffeWorkloadAPI'] as Record<string, { responseSerialize: (value: object) => Buffer }>;
    const bytes = service['FetchX509SVID']!.responseSerialize({
      svids: [{ spiffe_id: 'spiffe://example.org/a', x509_svid: Buffer.from([1, 2]), x509_svid_key: Buffer.from([3]), bundle: Buffer.from([4]), hint: 'h' }],
      crl: [Buffer.from([5])],
      federated_bundles: { 'spiffe://other.org': Buffer.from([6]) },
    });
    expect(fetchX509SvidCodec().deserialize(bytes)).toEqual({
      svids: [{ spiffe_id: 'spiffe://example.org/a', x509_svid: Buffer.from([1, 2]), x509_svid_key: Buffer.from([3]), bundle: Buffer.from([4]), hint: 'h' }],
      crl: [Buffer.from([5])],
      federated_bundles: { 'spiffe://other.org': Buffer.from([6]) },
    });
  });
});
