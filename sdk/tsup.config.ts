import { readFileSync } from 'node:fs';
import { defineConfig } from 'tsup';

/**
 * One entry per subpath of package.json `exports` (read from there, so the two cannot disagree);
 * `internal` is the driver's unstable surface.
 */
const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { exports: Record<string, unknown> };
const subpaths = Object.keys(pkg.exports)
  .filter((subpath) => subpath !== '.' && subpath !== './package.json')
  .map((subpath) => subpath.slice(2));

export default defineConfig({
  entry: ['src/index.ts', ...subpaths.map((subpath) => `src/${subpath}/index.ts`)],
  format: ['esm', 'cjs'],
  dts: true,
  // Shared chunks in both formats: a class reached through two subpaths (SpiffeId from the root and
  // from /spiffeid) must be one class, or instanceof fails between them. tsup splits ESM by default
  // and CJS only when asked.
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  tsconfig: 'tsconfig.json',
});
