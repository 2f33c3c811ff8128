import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * Calls `onChange` when `file` may have changed. The folder is watched, not the file, so an editor
 * or a ConfigMap replacing it by rename is seen as well as an in-place write. Changes arriving
 * while `onChange` runs are folded into one more call after it, never run concurrently.
 */
export function watchFile(file: string, onChange: () => Promise<void>, onError: (error: Error) => void): { close(): void } {
  const name = basename(file);
  let running = false;
  let again = false;
  const run = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    again = false;
    // onChange reports its own failures; a rejection here must not become an unhandled one.
    void onChange()
      .catch(() => {})
      .finally(() => {
        running = false;
        if (again) run();
      });
  };
  const watcher: FSWatcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
    // Some platforms do not name the file; then any change in the folder may be it.
    if (changed === null || changed === name) run();
  });
  // The folder went away (or the platform gave up on it): say so; changes are no longer seen.
  watcher.on('error', (error) => {
    watcher.close();
    onError(error);
  });
  return { close: () => watcher.close() };
}
