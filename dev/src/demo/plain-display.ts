import type { Display, DisplayContext, Output } from './display.js';
import { stamp } from './format.js';
import type { DemoEvent, DemoState } from './state.js';

const SUMMARY_INTERVAL_MS = 5_000;

/** For pipes, logs and CI: one line per event and a periodic summary, nothing redrawn. */
export class PlainDisplay implements Display {
  private timer: NodeJS.Timeout | undefined;
  private readonly onEvent = (event: DemoEvent): void => this.line(`${stamp(event.atMs)} ${event.text}`);

  constructor(
    private readonly out: Output,
    private readonly state: DemoState,
    private readonly context: DisplayContext,
  ) {}

  start(): void {
    this.line(`${this.context.rotation}; ${this.context.ending}`);
    this.state.on('event', this.onEvent);
    this.timer = setInterval(() => this.line(`${stamp(this.state.elapsed())} ${this.summary()}`), SUMMARY_INTERVAL_MS);
    this.timer.unref();
  }

  line(text: string): void {
    this.out.write(`${text}\n`);
  }

  stop(): void {
    this.state.off('event', this.onEvent);
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private summary(): string {
    const s = this.state;
    return (
      `summary: rotations seen by the client SDK ${s.rotations('client')}, by the server SDK ${s.rotations('server')}; ` +
      `requests ok ${s.requestsOk}, failed ${s.requestsFailed}; served by the server ${s.served}`
    );
  }
}
