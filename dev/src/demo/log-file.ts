import { createWriteStream, type WriteStream } from 'node:fs';
import type { DestinationStream } from 'pino';

/**
 * Where the agent, driver and SDK log while the terminal shows the demo. Writes after close()
 * are dropped rather than raising write-after-end: gRPC and timers may log during shutdown.
 */
export class LogFile implements DestinationStream {
  readonly path: string;
  private readonly stream: WriteStream;
  private closing: Promise<void> | undefined;
  private failure: Error | undefined;

  constructor(path: string) {
    this.path = path;
    this.stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
    this.stream.on('error', (error) => {
      this.failure ??= error;
    });
  }

  /** The first write error, if any; logging never takes the demo down. */
  get error(): Error | undefined {
    return this.failure;
  }

  write(chunk: string): void {
    if (this.closing === undefined && this.failure === undefined) this.stream.write(chunk);
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (this.stream.destroyed) resolve();
      else this.stream.end(() => resolve());
    });
    return this.closing;
  }
}
