/**
 * The gRPC side of the Workload API source: one channel to the endpoint and the FetchX509SVID
 * stream over it, with the security header. Kept apart from the source so the source is about
 * state (current material, retries, events) and this file is the only one that speaks gRPC.
 */
import { Client, credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { FETCH_X509_SVID_PATH, WORKLOAD_API_HEADER, fetchX509SvidCodec, type X509SvidResponseMessage } from './workload-proto.js';

export type X509SvidStream = ClientReadableStream<X509SvidResponseMessage>;

export class WorkloadApiClient {
  private readonly client: Client;

  /** `grpcTarget`: from parseEndpointUri. The Workload Endpoint is plaintext by spec (§3.1). */
  constructor(grpcTarget: string) {
    this.client = new Client(grpcTarget, credentials.createInsecure());
  }

  /** Opens a FetchX509SVID stream; messages, errors and the status arrive as stream events. */
  fetchX509Svid(): X509SvidStream {
    const { serialize, deserialize } = fetchX509SvidCodec();
    const metadata = new Metadata();
    metadata.set(WORKLOAD_API_HEADER, 'true');
    return this.client.makeServerStreamRequest(FETCH_X509_SVID_PATH, serialize, deserialize, {}, metadata);
  }

  /** Closes the channel; open streams end with CANCELLED. */
  close(): void {
    this.client.close();
  }
}
