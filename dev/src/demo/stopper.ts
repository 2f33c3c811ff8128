/**
 * Collects the reasons the demo may stop (a signal, --duration, --rotations, a fatal error);
 * the first one wins and is what the demo reports.
 */
export class Stopper {
  private stopReason: string | null = null;
  private readonly waiters: ((reason: string) => void)[] = [];
  private readonly disposers: (() => void)[] = [];

  get reason(): string | null {
    return this.stopReason;
  }

  get stopped(): boolean {
    return this.stopReason !== null;
  }

  stop(reason: string): void {
    if (this.stopReason !== null) return;
    this.stopReason = reason;
    for (const resolve of this.waiters.splice(0)) resolve(reason);
  }

  wait(): Promise<string> {
    if (this.stopReason !== null) return Promise.resolve(this.stopReason);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * SIGINT and SIGTERM stop the demo; repeating one while it cleans up calls `onRepeat` with how
   * many repeats there were, so the caller can decide when to give up on a clean exit. Repeats
   * within `echoMs` of the last counted signal are ignored: under `npm run`, one Ctrl-C arrives
   * twice (from the terminal, and forwarded by npm).
   */
  watchSignals(
    emitter: Pick<NodeJS.EventEmitter, 'on' | 'off'>,
    onRepeat: (signal: NodeJS.Signals, repeats: number) => void,
    echoMs = 1_000,
    clock: () => number = Date.now,
  ): void {
    let repeats = 0;
    let last = 0;
    const handler = (signal: NodeJS.Signals): void => {
      const now = clock();
      if (!this.stopped) {
        last = now;
        this.stop(`${signal} received`);
      } else if (now - last >= echoMs) {
        last = now;
        onRepeat(signal, ++repeats);
      }
    };
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      emitter.on(signal, handler);
      this.disposers.push(() => emitter.off(signal, handler));
    }
  }

  after(ms: number, reason: string): void {
    const timer = setTimeout(() => this.stop(reason), ms);
    this.disposers.push(() => clearTimeout(timer));
  }

  /** Removes signal handlers and timers. */
  dispose(): void {
    for (const dispose of this.disposers.splice(0)) dispose();
  }
}
