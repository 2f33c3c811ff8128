import { EventEmitter } from 'node:events';
import { messageOf } from './errors.js';
import { timeLeft } from './format.js';

export type PodRole = 'server' | 'client';
export const POD_ROLES: readonly PodRole[] = ['server', 'client'];

/** What one pod's SDK currently holds; never key material. */
export interface IdentityView {
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: Date;
  /** Serial changes seen after the first load. */
  readonly rotations: number;
}

export type DemoEventKind = 'info' | 'rotation' | 'warning' | 'failure';

export interface DemoEvent {
  readonly atMs: number;
  readonly kind: DemoEventKind;
  readonly text: string;
}

interface DemoStateEvents {
  event: [event: DemoEvent];
  /** The client pod's SDK saw a new SVID; `count` is its running total. */
  clientRotation: [count: number];
}

/** The demo's observable facts, fed by the SDK apps and read by the displays and the summary. */
export class DemoState extends EventEmitter<DemoStateEvents> {
  readonly startedAt: number;
  private readonly clock: () => number;
  private readonly identities = new Map<PodRole, IdentityView>();
  requestsOk = 0;
  requestsFailed = 0;
  /** Requests the server handled after verifying and authorizing the client. */
  served = 0;
  lastFailure: string | null = null;
  readonly recent: DemoEvent[] = [];

  constructor(clock: () => number = Date.now) {
    super();
    this.clock = clock;
    this.startedAt = clock();
  }

  now(): number {
    return this.clock();
  }

  elapsed(): number {
    return this.clock() - this.startedAt;
  }

  identity(role: PodRole): IdentityView | undefined {
    return this.identities.get(role);
  }

  rotations(role: PodRole): number {
    return this.identities.get(role)?.rotations ?? 0;
  }

  note(text: string, kind: DemoEventKind = 'info'): void {
    const event: DemoEvent = { atMs: this.elapsed(), kind, text };
    this.recent.push(event);
    if (this.recent.length > 50) this.recent.shift();
    this.emit('event', event);
  }

  /** A pod's SDK loaded credentials: the first load, a rotation, or a bundle-only update. */
  credentialsLoaded(role: PodRole, svid: { spiffeId: string; serial: string; notAfter: Date }): void {
    const before = this.identities.get(role);
    const expires = `expires in ${timeLeft(svid.notAfter, this.clock())}`;
    if (before === undefined) {
      this.identities.set(role, { ...svid, rotations: 0 });
      this.note(`${role} SDK loaded ${svid.spiffeId} serial ${svid.serial}, ${expires}`);
      return;
    }
    if (before.serial === svid.serial) {
      this.identities.set(role, { ...before, notAfter: svid.notAfter });
      this.note(`${role} SDK loaded a trust bundle update (same SVID)`);
      return;
    }
    const rotations = before.rotations + 1;
    this.identities.set(role, { ...svid, rotations });
    this.note(`rotation #${rotations} ${role} ${svid.spiffeId} serial ${before.serial} -> ${svid.serial}, ${expires}`, 'rotation');
    if (role === 'client') this.emit('clientRotation', rotations);
  }

  requestSucceeded(): void {
    this.requestsOk++;
  }

  requestFailed(error: unknown): void {
    this.requestsFailed++;
    this.lastFailure = messageOf(error);
    this.note(`request failed: ${this.lastFailure}`, 'failure');
  }

  requestServed(): void {
    this.served++;
  }
}
