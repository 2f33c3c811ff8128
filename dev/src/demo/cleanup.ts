import { messageOf } from './errors.js';

interface Step {
  readonly what: string;
  readonly run: () => unknown;
}

/**
 * Teardown registered as each part starts, run last-in first-out, so a demo that fails halfway
 * undoes exactly what it built, in the reverse order. A failing step does not stop the rest.
 */
export class CleanupStack {
  private readonly steps: Step[] = [];

  push(what: string, run: () => unknown): void {
    this.steps.push({ what, run });
  }

  /** Returns one line per step that failed, naming the step. */
  async runAll(): Promise<string[]> {
    const failures: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.run();
      } catch (error) {
        failures.push(`${step.what}: ${messageOf(error)}`);
      }
    }
    return failures;
  }
}
