import { READY, type Readiness } from './http-server.js';

export interface DriverState {
  /** Null before the CSI server listens and once it has been told to stop. */
  readonly csiSocket: string | null;
  readonly agentConnected: boolean;
  /** Why the agent cannot be used (IdentityBackend.connectionProblem()); else `agent unreachable at <adminSocket>`. */
  readonly agentProblem?: string;
  readonly adminSocket?: string;
  /** Recorded volumes are still being resumed after a restart. */
  readonly resuming?: boolean;
}

/** Ready means kubelet can reach the driver and a publish could get an identity from the agent. */
export function driverReadiness(state: DriverState): Readiness {
  if (state.csiSocket === null) return { ready: false, reason: 'CSI socket not served' };
  if (!state.agentConnected) return { ready: false, reason: state.agentProblem ?? `agent unreachable at ${state.adminSocket ?? 'its socket'}` };
  if (state.resuming === true) return { ready: false, reason: 'resuming recorded volumes' };
  return READY;
}
