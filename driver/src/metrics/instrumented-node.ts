import { performance } from 'node:perf_hooks';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../csi/errors.js';
import type { CsiNode } from '../csi/node-service.js';
import type { DriverMetrics } from './driver-metrics.js';

export interface InstrumentOptions {
  /** Monotonic milliseconds; tests pin it. */
  readonly now?: () => number;
}

/**
 * Wraps the Node service so every NodePublishVolume / NodeUnpublishVolume is counted with the
 * status kubelet receives, validation failures included. Errors pass through unchanged.
 */
export function instrumentNode(node: CsiNode, metrics: DriverMetrics, options: InstrumentOptions = {}): CsiNode {
  const now = options.now ?? (() => performance.now());
  return {
    getInfo: () => node.getInfo(),
    getCapabilities: () => node.getCapabilities(),
    async publishVolume(request, signal) {
      const started = now();
      try {
        const response = await node.publishVolume(request, signal);
        metrics.publishTotal.inc({ result: 'ok' });
        return response;
      } catch (err) {
        metrics.publishTotal.inc({ result: resultOf(err) });
        throw err;
      } finally {
        metrics.publishDuration.observe((now() - started) / 1000);
      }
    },
    async unpublishVolume(request) {
      try {
        const response = await node.unpublishVolume(request);
        metrics.unpublishTotal.inc({ result: 'ok' });
        return response;
      } catch (err) {
        metrics.unpublishTotal.inc({ result: resultOf(err) });
        throw err;
      }
    },
  };
}

/** The status the CSI server will send: a CsiError's own code, anything else INTERNAL. */
export function resultOf(err: unknown): string {
  const code = err instanceof CsiError ? err.code : status.INTERNAL;
  return (status[code] ?? 'UNKNOWN').toLowerCase();
}
