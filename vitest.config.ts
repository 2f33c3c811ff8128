import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Tests exercise the SDK sources directly; the built package is checked by the build step.
    alias: [
      { find: /^@spire-csi\/sdk$/, replacement: fileURLToPath(new URL('./sdk/src/index.ts', import.meta.url)) },
      { find: /^@spire-csi\/sdk\/([a-z0-9-]+)$/, replacement: fileURLToPath(new URL('./sdk/src/$1/index.ts', import.meta.url)) },
      // The dev tools reach driver internals through this one barrel; tests run both from source.
      { find: /^@spire-csi\/driver\/internal$/, replacement: fileURLToPath(new URL('./driver/src/internal.ts', import.meta.url)) },
      { find: /^@spire-csi\/dev\/dev-agent$/, replacement: fileURLToPath(new URL('./dev/src/dev-agent/main.ts', import.meta.url)) },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
