/**
 * Cleanup for the abnormal exits the runner can cause (timeout → SIGTERM, Ctrl-C): registered
 * functions run before the process exits, so no mount, child process or server outlives a bench.
 */
const cleanups = new Set<() => Promise<void>>();
let exiting = false;

export function onAbort(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (exiting) return;
    exiting = true;
    console.error(`bench: ${signal}; cleaning up`);
    void Promise.allSettled([...cleanups].map((fn) => fn())).then(() => process.exit(130));
  });
}
