import { cp } from 'node:fs/promises';
import { defineConfig } from 'tsup';

export default defineConfig({
  // cli: what bin/spire-csi-driver.js starts; internal: the unstable surface @spire-csi/dev imports.
  // One build, so both share chunks and the dev tools see the very classes the CLI checks for.
  entry: ['src/cli.ts', 'src/internal.ts'],
  format: ['esm'],
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  tsconfig: 'tsconfig.json',
  // tsup leaves `dependencies` external but would inline optional ones; koffi loads a native
  // binary from its own package folder, so it must be imported from node_modules at run time.
  external: ['koffi'],
  // The wire definitions ship inside the package so an installed driver never reaches outside its folder.
  async onSuccess() {
    await cp('../proto', 'dist/proto', { recursive: true });
  },
});
