import {
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Logger } from '@spire-csi/sdk';
import type { BrokerFaults } from './broker-faults.js';
import type { BrokerHub, BrokerStreamKind } from './broker-hub.js';
import { brokerStatus } from './broker-status.js';
import { endWithStatus } from './grpc-endpoint.js';
import {
  decodePodReference,
  isProblem,
  KUBERNETES_OBJECT_REFERENCE_TYPE_URL,
  resolvePod,
  type BrokerProblem,
  type PodReference,
  type WireWorkloadReference,
} from './pod-reference.js';
import type { Pod } from './pods.js';
import type { AgentProtos } from './protos.js';
import type { WireSpiffeJwtSvid } from './spiffe-responses.js';

/** The SSRF guard of the Broker Endpoint spec: every request carries `broker.spiffe.io: true`. */
export const BROKER_HEADER = 'broker.spiffe.io';
export const SECURITY_HEADER_MISSING = 'security header missing from request';

/**
 * `call`: any client whose SVID verifies may connect; one not in `brokers` is refused per call
 * with PermissionDenied. `handshake`: as SPIRE does, only `brokers` complete the mTLS handshake.
 */
export type BrokerAuthz = 'call' | 'handshake';

export interface BrokerServiceOptions {
  readonly protos: AgentProtos;
  /** SPIFFE IDs allowed to use the KubernetesObjectReference type. */
  readonly brokers: ReadonlySet<string>;
  /** Attach google.rpc.ErrorInfo to reference errors. */
  readonly errorInfo: boolean;
  readonly hub: BrokerHub;
  readonly faults: BrokerFaults;
  readonly logger: Logger;
  /** The verified SPIFFE ID of the caller's client certificate, if any. */
  callerId(call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>): string | undefined;
  pods(): readonly Pod[];
  /** Pushes to new subscribers (their first message). */
  requestPush(): void;
  /** Signs a JWT-SVID per entry matching `pod` (only `spiffeId`'s when given); [] when none match. */
  issueJwtSvids(pod: Pod, audiences: string[], spiffeId: string): Promise<WireSpiffeJwtSvid[]>;
}

interface WireSubscribeRequest {
  readonly reference?: WireWorkloadReference | null;
}

interface WireFetchJwtSvidRequest extends WireSubscribeRequest {
  readonly audience?: string[];
  readonly spiffe_id?: string;
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

/**
 * The `spiffe.broker.API` handlers. Checks run in SPIRE's order (security header; for
 * FetchJWTSVID the audience; the caller's identity; the reference's presence; whether this caller
 * may use this reference type; the reference's shape; the pod), and answer with SPIRE's codes and
 * messages, plus ErrorInfo reasons from the Broker API where they apply.
 */
export function brokerHandlers(options: BrokerServiceOptions): UntypedServiceImplementation {
  const { protos, hub, faults } = options;
  const statusOf = (problem: BrokerProblem) => brokerStatus(problem, protos, options.errorInfo);

  const admit = (call: AnyCall, request: WireSubscribeRequest): { pod: Pod; reference: PodReference } | BrokerProblem => {
    const caller = options.callerId(call);
    if (caller === undefined) return { code: status.UNAUTHENTICATED, details: 'unable to determine caller identity' };
    const any = request.reference?.reference ?? null;
    const typeUrl = any?.type_url ?? '';
    if (any === null || typeUrl === '') {
      return { code: status.INVALID_ARGUMENT, details: 'workload reference must be provided', reason: 'WORKLOAD_REFERENCE_INVALID' };
    }
    // The allowlist names brokers and, per broker, reference types; the dev agent allows its brokers one type.
    if (!options.brokers.has(caller) || typeUrl !== KUBERNETES_OBJECT_REFERENCE_TYPE_URL) {
      return { code: status.PERMISSION_DENIED, details: `broker ${JSON.stringify(caller)} is not allowed to use reference type ${JSON.stringify(typeUrl)}` };
    }
    const reference = decodePodReference(any, protos.kubernetesObjectReference);
    if (isProblem(reference)) return reference;
    const pod = resolvePod(reference, options.pods());
    const injected = faults.forPod([reference.uid, isProblem(pod) ? undefined : pod.uid]);
    if (injected) return injected;
    if (isProblem(pod)) return pod;
    options.logger.debug({ broker: caller, pod: `${pod.namespace}/${pod.name}`, uid: pod.uid }, 'dev-agent: broker call admitted');
    return { pod, reference };
  };

  /** The checks before a call's body is read: the security header, then a fault set for every call. */
  const gate = (metadata: Metadata): BrokerProblem | undefined => {
    const values = metadata.get(BROKER_HEADER);
    if (values.length !== 1 || values[0] !== 'true') return { code: status.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING };
    return faults.forAll();
  };

  const subscribe = (kind: BrokerStreamKind) => (call: ServerWritableStream<WireSubscribeRequest, unknown>) => {
    const admitted = gate(call.metadata) ?? admit(call, call.request);
    if (isProblem(admitted)) {
      const { code, details, metadata } = statusOf(admitted);
      return endWithStatus(call, code, details, metadata);
    }
    hub.add(kind, call, admitted.reference, admitted.pod);
    options.requestPush();
  };

  return {
    SubscribeToX509SVID: subscribe('svid'),
    SubscribeToX509Bundles: subscribe('bundle'),
    SubscribeToJWTBundles: subscribe('jwtBundle'),
    FetchJWTSVID: (call: ServerUnaryCall<WireFetchJwtSvidRequest, unknown>, callback: sendUnaryData<unknown>) => {
      const audiences = call.request.audience ?? [];
      const early =
        gate(call.metadata) ??
        (audiences.length === 0 ? { code: status.INVALID_ARGUMENT, details: 'audience must be specified' } : undefined);
      const admitted = early ?? admit(call, call.request);
      if (isProblem(admitted)) return callback(statusOf(admitted));
      options.issueJwtSvids(admitted.pod, [...audiences], call.request.spiffe_id ?? '').then(
        (svids) => {
          if (svids.length > 0) return callback(null, { svids });
          // As SPIRE: a pod no entry matches gets no token; the Broker API names the reason.
          callback(statusOf({ code: status.PERMISSION_DENIED, details: 'no identity issued', reason: 'WORKLOAD_NOT_ENTITLED' }));
        },
        (error: unknown) => {
          options.logger.error({ err: (error as Error).message }, 'dev-agent: issuing broker JWT-SVIDs failed');
          callback({ code: status.INTERNAL, details: 'dev-agent: issuing JWT-SVIDs failed' });
        },
      );
    },
  };
}
