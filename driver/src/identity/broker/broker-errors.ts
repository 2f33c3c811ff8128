import { status, type Metadata } from '@grpc/grpc-js';
import { AgentError } from '../identity-backend.js';
import { errorInfoFromMetadata, type ErrorInfo } from './error-details.js';
import { KUBERNETES_OBJECT_REFERENCE_TYPE_URL } from './reference.js';

/** Where an answer came from and who asked, so every message can name the fix. */
export interface BrokerErrorContext {
  /** The RPC, e.g. `SubscribeToX509SVID`. */
  readonly rpc: string;
  /** `pod reference default/web (uid …)`. */
  readonly pod: string;
  /** The broker endpoint as configured, e.g. `unix:///run/spire/broker.sock`. */
  readonly endpoint: string;
  /** The SPIFFE ID the driver presents (its own SVID), when it has one. */
  readonly driverId: string | undefined;
  /** `--broker-id`, when given. */
  readonly brokerId: string | undefined;
}

export interface BrokerStatus {
  readonly code: status;
  readonly details?: string;
  readonly metadata?: Metadata | null;
}

export const ALLOWLIST_SETTING = 'experimental.broker.brokers';

/** Connection errors that happen before any TLS byte is exchanged: nothing listens there. */
const NOT_LISTENING = /\b(ENOENT|ECONNREFUSED|EACCES|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT)\b/;
/**
 * The driver refused the server's certificate: the SDK's verification and authorizer messages
 * (`authorize: `, `x509svid: `, ...), or OpenSSL's own first filter on the client side.
 */
const SERVER_REJECTED =
  /\b(authorize|x509svid|x509bundle|spiffeid|tls): |unable to verify|unable to get local issuer|self[- ]signed certificate|Hostname\/IP does not match/i;
/** A TLS alert from the agent: it refused the driver's certificate (SPIRE's broker allowlist is checked there). */
const PEER_ALERT = /\balert\b/i;
const NO_CONNECTION = 'No connection established';

/**
 * How a SPIRE agent answers the Broker API, turned into an AgentError whose message tells an
 * operator what is wrong and what to change (spiffe/spire pkg/agent/broker: reference-type policy
 * → PermissionDenied, unknown pod → NotFound, an opaque attestation failure → Unauthenticated, a
 * broker missing from the allowlist → the TLS handshake fails, before any status exists).
 * `google.rpc.ErrorInfo` is read when the server sent one; the bare code is enough otherwise.
 */
export function brokerErrorFromStatus(ctx: BrokerErrorContext, s: BrokerStatus, cause?: unknown): AgentError {
  const info = errorInfoFromMetadata(s.metadata);
  const options = cause === undefined ? undefined : { cause };
  const said = agentSaid(s, info);
  const prefix = `broker: ${ctx.rpc} for ${ctx.pod}`;
  const driver = ctx.driverId ?? "(the driver's SVID from the Workload API)";
  switch (s.code) {
    case status.INVALID_ARGUMENT:
      return new AgentError(s.code, 'refused', `${prefix}: the SPIRE agent rejected the request as invalid${said}`, options);
    case status.PERMISSION_DENIED:
      if (isNotEntitled(s, info)) {
        return new AgentError(s.code, 'not-entitled', `${prefix}: no registration entry matches this pod${said}`, options);
      }
      return new AgentError(
        s.code,
        'refused',
        `${prefix}: the SPIRE agent does not allow this driver (SPIFFE ID ${driver}) to ask for pods${said}; ` +
          permissionFix(s.details ?? '', driver),
        options,
      );
    case status.NOT_FOUND:
      return new AgentError(
        s.code,
        'other',
        `${prefix}: the SPIRE agent does not find this pod${said}; it sees pods on its own node only, ` +
          'and a pod that has just started may not be visible to it yet',
        options,
      );
    case status.UNAUTHENTICATED:
      return new AgentError(
        s.code,
        'other',
        `${prefix}: the SPIRE agent could not attest this pod${said}; check the agent's k8s workload attestor and, ` +
          `with its experimental.broker access_policy enforced, the RBAC that lets ${driver} impersonate-via-spire pods`,
        options,
      );
    case status.UNAVAILABLE:
      return unavailable(ctx, s.details ?? '', driver, prefix, options);
    default:
      return new AgentError(s.code, 'other', `${prefix} failed with ${status[s.code] ?? s.code}${said}`, options);
  }
}

/** The agent closed a pod's stream with OK: SPIRE does so when the pod is gone (deleted, or off this node). */
export function brokerStreamEndedError(ctx: BrokerErrorContext): AgentError {
  return new AgentError(
    status.NOT_FOUND,
    'other',
    `broker: ${ctx.rpc} for ${ctx.pod}: the SPIRE agent ended the stream (the pod may have been deleted); ` +
      'the files stay until kubelet unpublishes the volume; subscribing again',
  );
}

/**
 * Why no connection to the endpoint was established, read from grpc-js's UNAVAILABLE details
 * ("No connection established. Last error: ..."): nothing listening, the agent refusing the TLS
 * handshake (a broker missing from its allowlist is refused there, before any gRPC status), or the
 * driver refusing the agent's certificate. Undefined when the call failed otherwise.
 */
export type ConnectionFailure = 'not-listening' | 'handshake-refused' | 'server-rejected';

export function connectionFailureOf(details: string): ConnectionFailure | undefined {
  if (!details.startsWith(NO_CONNECTION)) return undefined;
  if (NOT_LISTENING.test(details) || /Last error: (undefined|null)\b/.test(details)) return 'not-listening';
  if (PEER_ALERT.test(details)) return 'handshake-refused';
  if (SERVER_REJECTED.test(details)) return 'server-rejected';
  // The connection opened and then closed or reset during the handshake: the agent hung up on us.
  return 'handshake-refused';
}

function unavailable(ctx: BrokerErrorContext, details: string, driver: string, prefix: string, options: { cause?: unknown } | undefined): AgentError {
  const where = `the broker endpoint ${ctx.endpoint}`;
  const failure = connectionFailureOf(details);
  if (failure === 'server-rejected') {
    const expected = ctx.brokerId === undefined ? "a SPIFFE ID of the driver's own trust domain" : `--broker-id ${ctx.brokerId}`;
    return new AgentError(
      status.UNAVAILABLE,
      'unavailable',
      `${prefix}: the driver did not accept the certificate of ${where} (it must present ${expected}, ` +
        `chained to the driver's trust bundle): ${details}`,
    );
  }
  if (failure === 'handshake-refused') {
    return new AgentError(
      status.UNAVAILABLE,
      'unavailable',
      `${prefix}: ${where} refused the TLS handshake with the driver's SPIFFE ID ${driver}; ` +
        `add ${driver} to the SPIRE agent's ${ALLOWLIST_SETTING} allowlist (${details})`,
      options,
    );
  }
  return new AgentError(
    status.UNAVAILABLE,
    'unavailable',
    `${prefix}: ${where} is unavailable; is the SPIRE agent running with its experimental.broker endpoint there?` +
      (details === '' ? '' : ` (${details})`),
    options,
  );
}

/**
 * The setting to change, from the agent's own words. SPIRE denies a broker in three places: the
 * broker endpoint's reference-type policy, the k8s workload attestor's own broker list, and the
 * SubjectAccessReview for `impersonate-via-spire` when its access_policy is enforced.
 */
function permissionFix(details: string, driver: string): string {
  if (/impersonate-via-spire/.test(details)) {
    return (
      `let ${driver} use the verb impersonate-via-spire on pods in Kubernetes RBAC (deploy/broker/impersonation-rbac.yaml ` +
      "binds it to the User named by the driver's SPIFFE ID), or set the k8s workload attestor's " +
      'experimental.broker access_policy to "permissive"'
    );
  }
  if (/is not configured/.test(details)) {
    return `add ${driver} to the brokers of the SPIRE agent's k8s workload attestor (its experimental.broker block)`;
  }
  return (
    `in the agent's ${ALLOWLIST_SETTING} give the entry for ${driver} allowed_reference_types ` +
    `containing ${KUBERNETES_OBJECT_REFERENCE_TYPE_URL} (with allow_over_tcp for a tcp:// endpoint)`
  );
}

/** SPIRE's FetchJWTSVID answers PermissionDenied "no identity issued" when no entry matches, without ErrorInfo. */
function isNotEntitled(s: BrokerStatus, info: ErrorInfo | undefined): boolean {
  if (info !== undefined) return info.reason === 'WORKLOAD_NOT_ENTITLED';
  return /\bno identity issued\b/i.test(s.details ?? '');
}

function agentSaid(s: BrokerStatus, info: ErrorInfo | undefined): string {
  const code = status[s.code] ?? String(s.code);
  const reason = info === undefined || info.reason === '' ? '' : ` ${info.reason}`;
  const details = s.details ? `: ${s.details}` : '';
  return ` (agent answered ${code}${reason}${details})`;
}
