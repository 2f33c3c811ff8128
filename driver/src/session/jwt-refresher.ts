import { Backoff, type BackoffOptions } from '../retry/backoff.js';
import type { Clock, ClockTimer } from '@spire-csi/sdk/clock';
import { AgentError, type IdentityBackend } from '../identity/identity-backend.js';
import type { PodReference } from '../identity/pod-reference.js';
import { AgentJwtError, checkAgentJwtSvid, chooseJwtSvid, type CheckedJwtSvid } from './agent-jwt.js';
import { describeChoice, describeSvid } from './agent-svid.js';

/** Longest delay setTimeout honours; anything longer fires at once. */
const MAX_TIMER_MS = 2_147_483_647;
/** Refreshes land in [45 %, 50 %] of the remaining lifetime: spread out, never later than half. */
const JITTER = 0.1;
/** Floor between fetches, so an agent that keeps returning a nearly expired token is not hammered. */
const MIN_REFRESH_MS = 1_000;
export const DEFAULT_JWT_RETRY: BackoffOptions = { initialMs: 1_000, maxMs: 30_000, jitter: 'decorrelated' };

export interface JwtFailure {
  /** The audience whose token this refresher keeps. */
  readonly audience: string;
  /** What a publish timeout should report. */
  readonly problem: string;
  readonly agentError: AgentError | undefined;
  /** The agent answered with something that must not reach the pod. */
  readonly invalid: boolean;
  readonly retryInMs: number;
}

export interface JwtRefresherOptions {
  readonly identity: IdentityBackend;
  readonly pod: PodReference;
  /** The one audience every token is fetched for (and must carry alone). */
  readonly audience: string;
  readonly spiffeId: string | null;
  /** The agent's hint of the SVID to take (csi.spire.io/hint); null takes any. */
  readonly hint?: string | null;
  readonly clock: Clock;
  /** Uniform [0, 1) for the refresh jitter and the retry backoff. */
  readonly random: () => number;
  readonly retry?: BackoffOptions;
  /** A usable token, on the first fetch and on every refresh (possibly the same token again). */
  readonly onToken: (token: CheckedJwtSvid) => void;
  /** The attempt gave nothing usable; the last token stays, a retry is already scheduled. */
  readonly onFailure: (failure: JwtFailure) => void;
}

/**
 * When to fetch again: at half of the remaining lifetime, pulled earlier by up to 10 % of that so
 * many volumes issued together do not refresh in lockstep.
 */
export function jwtRefreshDelayMs(expiresAt: Date, now: Date, random: () => number): number {
  const remaining = expiresAt.getTime() - now.getTime();
  const half = remaining / 2;
  const value = random();
  const draw = Number.isFinite(value) ? Math.min(Math.max(value, 0), 1) : 0;
  const delay = half * (1 - JITTER * draw);
  const floor = Math.min(MIN_REFRESH_MS, Math.max(0, half));
  return Math.round(Math.min(MAX_TIMER_MS, Math.max(floor, delay)));
}

/**
 * Keeps one volume's JWT-SVID for one audience fresh: fetches at start, then again before expiry;
 * failures are retried with capped, jittered backoff while the last good token stays in place. A
 * volume with several audiences runs one refresher per audience (each token is fetched for its
 * audience alone) and combines their tokens. Time comes from the injected clock, so tests drive
 * refreshes without waiting.
 */
export class JwtRefresher {
  private readonly opts: JwtRefresherOptions;
  private readonly backoff: Backoff;
  private timer: ClockTimer | null = null;
  private inFlight: AbortController | null = null;
  private closed = false;

  constructor(options: JwtRefresherOptions) {
    this.opts = options;
    this.backoff = new Backoff({ ...DEFAULT_JWT_RETRY, ...options.retry, random: options.random });
  }

  start(): void {
    if (this.closed || this.timer !== null || this.inFlight !== null) return;
    void this.fetch();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
    this.inFlight?.abort();
    this.inFlight = null;
  }

  private async fetch(): Promise<void> {
    this.timer = null;
    if (this.closed) return;
    const { identity, pod, audience } = this.opts;
    const controller = new AbortController();
    this.inFlight = controller;
    let outcome: { token: CheckedJwtSvid } | { problem: string; agentError?: AgentError; invalid: boolean };
    try {
      const svids = await identity.fetchJwtSvids(pod, [audience], controller.signal);
      outcome = this.pick(svids);
    } catch (error) {
      outcome =
        error instanceof AgentError
          ? { problem: error.message, agentError: error, invalid: false }
          : { problem: `fetching the JWT-SVID failed: ${(error as Error).message}`, invalid: false };
    }
    if (this.closed || this.inFlight !== controller) return;
    this.inFlight = null;
    if ('token' in outcome) {
      this.backoff.reset();
      this.schedule(jwtRefreshDelayMs(outcome.token.expiresAt, this.opts.clock.now(), this.opts.random));
      this.opts.onToken(outcome.token);
      return;
    }
    const retryInMs = this.backoff.next();
    this.schedule(retryInMs);
    this.opts.onFailure({ audience, problem: outcome.problem, agentError: outcome.agentError, invalid: outcome.invalid, retryInMs });
  }

  private pick(svids: Parameters<typeof chooseJwtSvid>[0]): { token: CheckedJwtSvid } | { problem: string; invalid: boolean } {
    const { spiffeId, audience } = this.opts;
    const hint = this.opts.hint ?? null;
    const chosen = chooseJwtSvid(svids, spiffeId, hint);
    if (chosen === undefined) {
      const problem =
        svids.length === 0
          ? 'the SPIRE agent returned no JWT-SVID for this pod (no registration entry matches it yet)'
          : `none of the JWT-SVIDs the agent returned is ${describeChoice(spiffeId, hint)} (got ${svids.map(describeSvid).join(', ')})`;
      return { problem, invalid: false };
    }
    try {
      return { token: checkAgentJwtSvid(chosen, audience, this.opts.clock.now()) };
    } catch (error) {
      if (!(error instanceof AgentJwtError)) throw error;
      return { problem: error.message, invalid: true };
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = this.opts.clock.setTimeout(() => void this.fetch(), delayMs);
  }
}
