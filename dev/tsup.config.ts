import { defineConfig } from 'tsup';

export default defineConfig({
  // dev-agent/main: the library the driver CLI delegates `dev-agent` to; dev-agent/cli and
  // demo/main: what bin/ starts.
  entry: ['src/dev-agent/main.ts', 'src/dev-agent/cli.ts', 'src/demo/main.ts'],
  format: ['esm'],
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  tsconfig: 'tsconfig.json',
  // Dependencies stay external (tsup's default), so @spire-csi/driver/internal is the driver's
  // own build: one copy of its classes, shared with the driver CLI that loads this package.
});
