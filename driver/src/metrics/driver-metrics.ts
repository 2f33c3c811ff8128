import { systemClock, type Clock } from '@spire-csi/sdk/clock';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { VolumeErrorKind } from '../volume/volume-events.js';

/** What the scrape-time gauges read; the VolumeManager satisfies it. */
export interface VolumeStats {
  readonly volumeCount: number;
  earliestExpiry(): Date | undefined;
}

/** The driver's own SVID (broker mode: the one it presents to the broker endpoint). */
export interface OwnSvidStats {
  ownSvidExpiry(): Date | undefined;
}

export interface DriverMetricsOptions {
  readonly volumes: VolumeStats;
  /** Broker mode: adds spire_csi_own_svid_expiry_seconds. */
  readonly ownSvid?: OwnSvidStats;
  /** Defaults to the wall clock; tests pin it. */
  readonly clock?: Clock;
  /** process_* and nodejs_* metrics; on by default. */
  readonly defaultMetrics?: boolean;
}

// From a tmpfs mount and a cached SVID (milliseconds) up to the default 30 s publish timeout.
export const PUBLISH_DURATION_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30,
];

// A Record (not an array) so that a new VolumeErrorKind fails the typecheck until it is listed here.
const ERROR_KINDS: Record<VolumeErrorKind, true> = {
  'invalid-svid': true,
  'write-failed': true,
  'target-not-mounted': true,
  'publish-failed': true,
  'unpublish-failed': true,
  'resume-failed': true,
  'agent-error': true,
  'corrupt-record': true,
};

/**
 * The driver's metrics in a registry of their own (not prom-client's global one), so several
 * drivers in one process — tests — never collide. Labels are bounded sets: no volume IDs or pod
 * names, which would grow without limit and leak workload names.
 */
export class DriverMetrics {
  readonly registry = new Registry();
  readonly volumes: Gauge;
  readonly publishTotal: Counter<'result'>;
  readonly unpublishTotal: Counter<'result'>;
  readonly publishDuration: Histogram;
  readonly rotationsTotal: Counter;
  readonly errorsTotal: Counter<'kind'>;
  readonly agentConnected: Gauge;
  readonly svidExpiry: Gauge;
  /** Present in broker mode only. */
  readonly ownSvidExpiry: Gauge | undefined;

  constructor(options: DriverMetricsOptions) {
    const registers = [this.registry];
    const clock = options.clock ?? systemClock;
    const stats = options.volumes;

    this.volumes = new Gauge({
      name: 'spire_csi_volumes',
      help: 'Volumes currently managed by this driver.',
      registers,
      collect: () => {
        this.volumes.set(stats.volumeCount);
      },
    });
    this.publishTotal = new Counter({
      name: 'spire_csi_publish_total',
      help: 'NodePublishVolume calls by result: ok or the gRPC status name returned to kubelet.',
      labelNames: ['result'],
      registers,
    });
    this.unpublishTotal = new Counter({
      name: 'spire_csi_unpublish_total',
      help: 'NodeUnpublishVolume calls by result: ok or the gRPC status name returned to kubelet.',
      labelNames: ['result'],
      registers,
    });
    this.publishDuration = new Histogram({
      name: 'spire_csi_publish_duration_seconds',
      help: 'Time to answer NodePublishVolume, failures included.',
      buckets: [...PUBLISH_DURATION_BUCKETS],
      registers,
    });
    this.rotationsTotal = new Counter({
      name: 'spire_csi_rotations_total',
      help: 'X509-SVID rotations written to published volumes (first deliveries excluded).',
      registers,
    });
    this.errorsTotal = new Counter({
      name: 'spire_csi_errors_total',
      help: 'Volume errors by kind.',
      labelNames: ['kind'],
      registers,
    });
    this.agentConnected = new Gauge({
      name: 'spire_csi_agent_connected',
      help: '1 while the SPIRE agent answers: its Delegated Identity API stream is up, or (broker mode) the mTLS connection to its broker endpoint; else 0.',
      registers,
    });
    this.svidExpiry = new Gauge({
      name: 'spire_csi_svid_expiry_seconds',
      help: 'Seconds until the earliest X509-SVID served by this driver expires; absent without SVIDs.',
      registers,
      collect: () => {
        const expiry = stats.earliestExpiry();
        // No sample rather than 0: 0 would read as "expiring now" and fire alerts on an idle node.
        if (expiry === undefined) this.svidExpiry.remove({});
        else this.svidExpiry.set((expiry.getTime() - clock.now().getTime()) / 1000);
      },
    });

    const own = options.ownSvid;
    this.ownSvidExpiry =
      own === undefined
        ? undefined
        : new Gauge({
            name: 'spire_csi_own_svid_expiry_seconds',
            help: "Seconds until the driver's own X509-SVID (from the Workload API, presented to the broker endpoint) expires; absent before the first.",
            registers,
            collect: () => {
              const expiry = own.ownSvidExpiry();
              if (expiry === undefined) this.ownSvidExpiry?.remove({});
              else this.ownSvidExpiry?.set((expiry.getTime() - clock.now().getTime()) / 1000);
            },
          });

    // Zero series exist from the start, so rate() and absent-vs-zero alerts work before the first event.
    this.publishTotal.inc({ result: 'ok' }, 0);
    this.unpublishTotal.inc({ result: 'ok' }, 0);
    for (const kind of Object.keys(ERROR_KINDS)) this.errorsTotal.inc({ kind }, 0);

    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }
}
