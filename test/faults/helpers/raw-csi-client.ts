/**
 * A CSI Node client that sends bytes as given, so the fuzzer can put damaged protobuf on the wire
 * (wrong wire types, truncation) that a typed client would never produce.
 */
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadProtos } from '../../../driver/src/proto/load.js';

const identity = (b: Buffer): Buffer => b;

type RawUnary = (request: Buffer, callback: (error: ServiceError | null, response?: Buffer) => void) => void;

export class RawCsiClient {
  private readonly client: Client & Record<string, RawUnary>;
  private readonly protos = loadProtos();

  constructor(csiSocketPath: string) {
    const method = (name: string) => ({
      path: `/csi.v1.Node/${name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    });
    const Ctor = makeGenericClientConstructor(
      { NodePublishVolume: method('NodePublishVolume'), NodeUnpublishVolume: method('NodeUnpublishVolume') },
      'csi.v1.Node',
    );
    this.client = new Ctor(`unix:${csiSocketPath}`, credentials.createInsecure()) as Client & Record<string, RawUnary>;
  }

  /** The bytes a typed client would send for `request`. */
  encodePublish(request: object): Buffer {
    return this.protos.csi.Node.service.NodePublishVolume!.requestSerialize(request);
  }

  /** What the driver will see for `bytes` (throws when they do not decode). */
  decodePublish(bytes: Buffer): Record<string, unknown> {
    return this.protos.csi.Node.service.NodePublishVolume!.requestDeserialize(bytes) as Record<string, unknown>;
  }

  call(method: 'NodePublishVolume' | 'NodeUnpublishVolume', bytes: Buffer): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      this.client[method]!.call(this.client, bytes, (error, response) => (error ? reject(error) : resolve(response)));
    });
  }

  close(): void {
    this.client.close();
  }
}
