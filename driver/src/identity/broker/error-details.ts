import type { Metadata } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/** `google.rpc.ErrorInfo`: why a call failed, as a machine-readable reason (Broker API §4.8). */
export interface ErrorInfo {
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** The trailer gRPC servers put a serialized `google.rpc.Status` (with its details) into. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

// google/rpc/status.proto and error_details.proto define far more than is read here; these are the
// three messages (field numbers as upstream) needed to find an ErrorInfo among a status's details.
const root = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 } as protobuf.IMapField,
              },
            },
          },
        },
      },
    },
  },
});
const StatusType = root.lookupType('google.rpc.Status');
const ErrorInfoType = root.lookupType('google.rpc.ErrorInfo');

interface DecodedAny {
  readonly type_url?: string;
  readonly value?: Uint8Array;
}

/**
 * The first `google.rpc.ErrorInfo` among a failed call's status details, or undefined when the
 * server sent none. Servers may send anything in the trailer: bytes that do not decode are ignored,
 * and the caller works with the bare status code, as the standard requires clients to.
 */
export function errorInfoFromMetadata(metadata: Metadata | undefined | null): ErrorInfo | undefined {
  for (const value of metadata?.get(STATUS_DETAILS_KEY) ?? []) {
    if (typeof value === 'string') continue;
    const info = errorInfoFromStatusBytes(value);
    if (info !== undefined) return info;
  }
  return undefined;
}

export function errorInfoFromStatusBytes(bytes: Uint8Array): ErrorInfo | undefined {
  try {
    const status = StatusType.toObject(StatusType.decode(bytes)) as { details?: DecodedAny[] };
    for (const detail of status.details ?? []) {
      if (detail.type_url !== ERROR_INFO_TYPE_URL || detail.value === undefined) continue;
      const info = ErrorInfoType.toObject(ErrorInfoType.decode(detail.value)) as Partial<ErrorInfo>;
      return { reason: info.reason ?? '', domain: info.domain ?? '', metadata: { ...(info.metadata ?? {}) } };
    }
  } catch {
    // Garbage in the trailer is the server's problem; the status code still says what happened.
  }
  return undefined;
}

/** Builds the trailer value for an ErrorInfo (what a Broker API server sends); tests and the dev agent use it. */
export function statusDetailsWithErrorInfo(code: number, message: string, info: ErrorInfo): Buffer {
  const detail = { type_url: ERROR_INFO_TYPE_URL, value: ErrorInfoType.encode(ErrorInfoType.fromObject(info)).finish() };
  return Buffer.from(StatusType.encode(StatusType.fromObject({ code, message, details: [detail] })).finish());
}
