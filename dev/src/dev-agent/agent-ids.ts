import { SpiffeId } from '@spire-csi/sdk';

/** The SPIFFE IDs of the agent's own endpoints, after defaults and checks. */
export interface AgentIds {
  /** The driver's identity, served on the Workload API. */
  readonly workloadId: string;
  /** What the Broker endpoint presents. */
  readonly brokerServerId: string;
  /** Who may use the Broker endpoint. */
  readonly brokers: readonly string[];
}

export interface AgentIdsInput {
  readonly workloadId?: string;
  readonly brokerServerId?: string;
  readonly brokers?: readonly string[];
  /** Set when the Broker endpoint is served: then `brokers` may not be empty. */
  readonly brokerSocketPath?: string;
}

/**
 * Defaults as a Helm install of spire-csi and a SPIRE agent would name them; the two IDs the agent
 * issues itself must be in its trust domain (its CA signs them), brokers may be anywhere.
 */
export function resolveAgentIds(input: AgentIdsInput, trustDomain: string): AgentIds {
  const workloadId = ownId(input.workloadId ?? `spiffe://${trustDomain}/ns/spire-csi/sa/spire-csi-driver`, 'workloadId', trustDomain);
  const brokerServerId = ownId(input.brokerServerId ?? `spiffe://${trustDomain}/spire/agent/dev`, 'brokerServerId', trustDomain);
  const brokers = (input.brokers ?? [workloadId]).map((id, i) => checkedId(id, `brokers[${i}]`));
  if (input.brokerSocketPath !== undefined && brokers.length === 0) {
    // As SPIRE, which refuses to serve the endpoint to nobody: a misconfiguration, not a policy.
    throw new Error('dev-agent: brokers must name at least one SPIFFE ID when the Broker endpoint is on');
  }
  return { workloadId, brokerServerId, brokers };
}

/** The ID in its canonical form; a malformed one is an error naming `field`. */
export function checkedId(id: string, field: string): string {
  try {
    return SpiffeId.parse(id).toString();
  } catch (error) {
    throw new Error(`dev-agent: ${field}: ${(error as Error).message}`, { cause: error });
  }
}

function ownId(id: string, field: string, trustDomain: string): string {
  const checked = checkedId(id, field);
  if (SpiffeId.parse(checked).trustDomain.name !== trustDomain) {
    throw new Error(`dev-agent: ${field} "${checked}" is not in the agent's trust domain "${trustDomain}"; the agent's CA only issues for its own`);
  }
  return checked;
}
