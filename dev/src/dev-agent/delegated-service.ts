import {
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Logger } from '@spire-csi/sdk';
import type { WireFetchJwtSvidsRequest, WireFetchJwtSvidsResponse } from '@spire-csi/driver/internal';
import { endWithStatus } from './grpc-endpoint.js';
import { checkJwtSvidRequest, checkSvidRequest, type JwtSvidRequest } from './responses.js';
import type { BundleCall, JwtBundleCall, StreamHub, SvidCall } from './stream-hub.js';

export const NOT_A_DELEGATE = 'caller not configured as an authorized delegate';

export interface DelegatedServiceOptions {
  readonly hub: StreamHub;
  readonly logger: Logger;
  /** Answer every call with PermissionDenied (an agent that does not list the caller). */
  denyAll(): boolean;
  /** Pushes to new subscribers (their first message). */
  requestPush(): void;
  /** One fresh token per entry matching the request's selectors. */
  issueJwtSvids(request: JwtSvidRequest): Promise<WireFetchJwtSvidsResponse>;
}

/** The Delegated Identity API handlers: requests checked as SPIRE checks them, streams handed to the hub. */
export function delegatedHandlers(options: DelegatedServiceOptions): UntypedServiceImplementation {
  const { hub } = options;
  const refuse = (call: ServerWritableStream<unknown, unknown>): boolean => {
    if (!options.denyAll()) return false;
    endWithStatus(call, status.PERMISSION_DENIED, NOT_A_DELEGATE);
    return true;
  };
  return {
    SubscribeToX509SVIDs: (call: SvidCall) => {
      if (refuse(call)) return;
      const checked = checkSvidRequest(call.request);
      if (!Array.isArray(checked)) return endWithStatus(call, checked.code, checked.details);
      hub.addSvidStream(call, checked);
      options.requestPush();
    },
    SubscribeToX509Bundles: (call: BundleCall) => {
      if (refuse(call)) return;
      hub.addBundleStream(call);
      options.requestPush();
    },
    FetchJWTSVIDs: (
      call: ServerUnaryCall<WireFetchJwtSvidsRequest, WireFetchJwtSvidsResponse>,
      callback: sendUnaryData<WireFetchJwtSvidsResponse>,
    ) => {
      if (options.denyAll()) return callback({ code: status.PERMISSION_DENIED, details: NOT_A_DELEGATE });
      const checked = checkJwtSvidRequest(call.request);
      if ('code' in checked) return callback({ code: checked.code, details: checked.details });
      options.issueJwtSvids(checked).then(
        (response) => callback(null, response),
        (error: unknown) => {
          options.logger.error({ err: (error as Error).message }, 'dev-agent: issuing JWT-SVIDs failed');
          callback({ code: status.INTERNAL, details: 'dev-agent: issuing JWT-SVIDs failed' });
        },
      );
    },
    SubscribeToJWTBundles: (call: JwtBundleCall) => {
      if (refuse(call)) return;
      hub.addJwtBundleStream(call);
      options.requestPush();
    },
  };
}
