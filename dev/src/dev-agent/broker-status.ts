import { Metadata, type status } from '@grpc/grpc-js';
import type { BrokerProblem } from './pod-reference.js';
import type { AgentProtos } from './protos.js';

export const ERROR_INFO_DOMAIN = 'spiffe.io';
export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';
/** The trailer rich-error clients read (a serialized google.rpc.Status). */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';

/** What grpc-js takes to end a call with a status and trailers. */
export interface StatusWithTrailers {
  readonly code: status;
  readonly details: string;
  readonly metadata?: Metadata;
}

/**
 * The status a refusal is sent as. With `errorInfo` on and a reason known, a google.rpc.Status
 * holding a google.rpc.ErrorInfo (domain "spiffe.io") rides in the `grpc-status-details-bin`
 * trailer, as the Broker API recommends; clients that ignore it still get the bare code.
 */
export function brokerStatus(problem: BrokerProblem, protos: AgentProtos, errorInfo: boolean): StatusWithTrailers {
  if (!errorInfo || problem.reason === undefined) return { code: problem.code, details: problem.details };
  const info = protos.errorInfo.encode(
    protos.errorInfo.fromObject({ reason: problem.reason, domain: ERROR_INFO_DOMAIN, metadata: { ...problem.metadata } }),
  ).finish();
  const rpcStatus = protos.status.encode(
    protos.status.fromObject({
      code: problem.code,
      message: problem.details,
      details: [{ type_url: ERROR_INFO_TYPE_URL, value: info }],
    }),
  ).finish();
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(rpcStatus));
  return { code: problem.code, details: problem.details, metadata };
}
