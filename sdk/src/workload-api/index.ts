/**
 * The SPIFFE Workload API as an X509Source: {@link WorkloadApiSource} keeps the SVID and bundles
 * of the FetchX509SVID stream current, so TLS servers, clients and dispatchers work with it as
 * they work with a FileSource. Needs the optional peer dependencies `@grpc/grpc-js` and
 * `@grpc/proto-loader`; importing `@spire-csi/sdk` or any other subpath never loads them.
 *
 * @packageDocumentation
 */
export {
  WorkloadApiSource,
  DEFAULT_WORKLOAD_API_READY_TIMEOUT_MS,
  type WorkloadApiSourceOptions,
  type WorkloadApiSourceEvents,
} from './workload-api-source.js';
export type { BackoffOptions } from './backoff.js';
export { parseEndpointUri, type ParseEndpointOptions, type EndpointUri } from './endpoint.js';
export { WorkloadApiError, type WorkloadApiErrorKind } from './errors.js';
