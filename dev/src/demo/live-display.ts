import type { Display, DisplayContext, Output } from './display.js';
import { shortSerial, stamp, timeLeft } from './format.js';
import { POD_ROLES, type DemoState } from './state.js';

const REFRESH_MS = 200;
const RECENT_EVENTS = 4;
const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';
const CLEAR_BELOW = '\x1b[J';

/** Full serials are 32 hex digits; in a few redrawn lines the first dozen tell them apart. */
function shortenSerials(text: string): string {
  return text.replace(/\b[0-9A-F]{20,}\b/g, (serial) => shortSerial(serial));
}

/** For a terminal: a few lines redrawn in place, so rotation is visible as it happens. */
export class LiveDisplay implements Display {
  private timer: NodeJS.Timeout | undefined;
  private drawn = 0;
  private running = false;
  private readonly redraw = (): void => this.render();

  constructor(
    private readonly out: Output,
    private readonly state: DemoState,
    private readonly context: DisplayContext,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.out.write(HIDE_CURSOR);
    // Redrawn at once on every event, so a rotation shows the moment the SDK sees it.
    this.state.on('event', this.redraw);
    this.timer = setInterval(this.redraw, REFRESH_MS);
    this.timer.unref();
    this.render();
  }

  line(text: string): void {
    if (!this.running) {
      this.out.write(`${text}\n`);
      return;
    }
    this.out.write(`${this.erase()}${text}\n`);
    this.drawn = 0;
    this.render();
  }

  stop(): void {
    if (!this.running) return;
    this.render();
    this.running = false;
    this.state.off('event', this.redraw);
    clearInterval(this.timer);
    this.timer = undefined;
    this.drawn = 0;
    this.out.write(SHOW_CURSOR);
  }

  private erase(): string {
    return this.drawn > 0 ? `\x1b[${this.drawn}F${CLEAR_BELOW}` : '';
  }

  private render(): void {
    if (!this.running) return;
    const width = Math.max(40, (this.out.columns ?? 100) - 1);
    const lines = this.lines().map((line) => (line.length > width ? `${line.slice(0, width - 1)}…` : line));
    this.out.write(`${this.erase()}${lines.join('\n')}\n`);
    this.drawn = lines.length;
  }

  private lines(): string[] {
    const s = this.state;
    const now = s.now();
    const idWidth = Math.max(9, ...POD_ROLES.map((role) => s.identity(role)?.spiffeId.length ?? 0));
    const row = (cells: string[]): string =>
      `  ${cells[0]!.padEnd(7)} ${cells[1]!.padEnd(idWidth)}  ${cells[2]!.padEnd(14)} ${cells[3]!.padEnd(11)} ${cells[4]}`;
    const lines = ['', row(['pod', 'SPIFFE ID', 'serial', 'expires in', 'rotations'])];
    for (const role of POD_ROLES) {
      const id = s.identity(role);
      lines.push(
        id === undefined
          ? row([role, '(waiting for its volume)', '', '', ''])
          : row([role, id.spiffeId, shortSerial(id.serial), timeLeft(id.notAfter, now), String(id.rotations)]),
      );
    }
    lines.push(
      '',
      `  requests  ok ${s.requestsOk}   failed ${s.requestsFailed}   served ${s.served}` +
        `   (client -> server every ${this.context.requestIntervalMs} ms over mTLS; each checks the other's SPIFFE ID)`,
    );
    if (s.lastFailure !== null) lines.push(`  last failure: ${s.lastFailure}`);
    lines.push('', '  recent events');
    const recent = s.recent.slice(-RECENT_EVENTS);
    for (const event of recent) lines.push(`  ${stamp(event.atMs)} ${shortenSerials(event.text)}`);
    for (let i = recent.length; i < RECENT_EVENTS; i++) lines.push('');
    lines.push('', `  running ${(s.elapsed() / 1000).toFixed(1)}s · ${this.context.rotation} · ${this.context.ending}`);
    return lines;
  }
}
