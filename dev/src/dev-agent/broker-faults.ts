import type { status } from '@grpc/grpc-js';
import type { BrokerProblem } from './pod-reference.js';

/** Which calls a fault applies to: those for one pod (by UID), or every call (`'all'`, or `{}`). */
export type BrokerFaultMatch = { readonly uid?: string } | 'all';

/** The status the calls get; `reason` adds a google.rpc.ErrorInfo (when the agent sends them). */
export interface BrokerFault {
  readonly code: status;
  readonly details: string;
  readonly reason?: string;
}

/**
 * Failures tests inject into the Broker endpoint (Unavailable while "loading", Unauthenticated for
 * an opaque attestation failure, NotFound for a pod "not seen yet"...). A fault stays until cleared,
 * so a client's retries keep meeting it; the fault for every pod is checked first.
 */
export class BrokerFaults {
  private all: BrokerFault | undefined;
  private readonly byUid = new Map<string, BrokerFault>();

  set(match: BrokerFaultMatch, fault: BrokerFault | undefined): void {
    const uid = match === 'all' ? undefined : match.uid;
    if (uid === undefined) this.all = fault;
    else if (fault === undefined) this.byUid.delete(uid);
    else this.byUid.set(uid, fault);
  }

  /** The fault for every call, checked before the call's reference is even read. */
  forAll(): BrokerProblem | undefined {
    return this.all && toProblem(this.all);
  }

  /** The fault for a call about any of `uids` (the UID the reference gave, the UID it resolved to). */
  forPod(uids: readonly (string | undefined)[]): BrokerProblem | undefined {
    for (const uid of uids) {
      const fault = uid ? this.byUid.get(uid) : undefined;
      if (fault) return toProblem(fault);
    }
    return undefined;
  }
}

function toProblem(fault: BrokerFault): BrokerProblem {
  return fault.reason === undefined
    ? { code: fault.code, details: fault.details }
    : { code: fault.code, details: fault.details, reason: fault.reason };
}
