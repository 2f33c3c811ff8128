import { defineConfig } from 'tsup';

export default defineConfig({
  // One entry per public subpath (package.json `exports`).
  entry: ['src/index.ts', 'src/clock/index.ts', 'src/layout/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  tsconfig: 'tsconfig.json',
});
