import { EventEmitter } from 'node:events';

export type VolumeErrorKind =
  | 'invalid-svid'
  | 'write-failed'
  | 'target-not-mounted'
  | 'publish-failed'
  | 'unpublish-failed'
  | 'resume-failed'
  | 'agent-error'
  | 'corrupt-record';

export interface PublishedEvent {
  readonly volumeId: string;
  readonly durationMs: number;
}

export interface RotatedEvent {
  readonly volumeId: string;
  readonly spiffeId: string;
  readonly notAfter: Date;
  /** True for the first delivery of a session (publish or resume), false for a rotation. */
  readonly initial: boolean;
}

export interface VolumeErrorEvent {
  readonly kind: VolumeErrorKind;
  readonly volumeId?: string;
}

interface VolumeEventMap {
  published: [PublishedEvent];
  rotated: [RotatedEvent];
  error: [VolumeErrorEvent];
}

/**
 * Hooks for metrics. An 'error' with no listener must not crash the driver (EventEmitter throws
 * in that case), so errors are only emitted when someone listens.
 */
export class VolumeEvents extends EventEmitter<VolumeEventMap> {
  emitError(kind: VolumeErrorKind, volumeId?: string): void {
    if (this.listenerCount('error') > 0) this.emit('error', volumeId === undefined ? { kind } : { kind, volumeId });
  }
}
