import type { RotatedEvent, VolumeErrorEvent, VolumeEvents } from '../volume/volume-events.js';
import type { DriverMetrics } from './driver-metrics.js';

/** The agent connectivity signal; the Delegated Identity client (any IdentityProvider) fits. */
export interface AgentStateSource {
  /** Read once at bind time; a plain emitter without it starts at 0. */
  readonly connected?: boolean;
  on(event: 'state', listener: (connected: boolean) => void): unknown;
  off(event: 'state', listener: (connected: boolean) => void): unknown;
}

export interface MetricsSources {
  readonly events: VolumeEvents;
  readonly agent: AgentStateSource;
}

/**
 * Feeds the event-driven metrics. Publish and unpublish outcomes are not taken from here: the
 * manager reports neither successful unpublishes nor every failed publish (a conflicting spec,
 * validation, shutdown), so they are counted at the CSI layer (instrumentNode). Returns the unbind.
 */
export function bindMetrics(metrics: DriverMetrics, sources: MetricsSources): () => void {
  const { events, agent } = sources;
  const onRotated = (event: RotatedEvent): void => {
    if (!event.initial) metrics.rotationsTotal.inc();
  };
  const onError = (event: VolumeErrorEvent): void => {
    metrics.errorsTotal.inc({ kind: event.kind });
  };
  const onState = (connected: boolean): void => {
    metrics.agentConnected.set(connected ? 1 : 0);
  };

  metrics.agentConnected.set(agent.connected === true ? 1 : 0);
  events.on('rotated', onRotated);
  events.on('error', onError);
  agent.on('state', onState);
  return () => {
    events.off('rotated', onRotated);
    events.off('error', onError);
    agent.off('state', onState);
  };
}
