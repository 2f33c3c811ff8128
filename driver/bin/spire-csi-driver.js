#!/usr/bin/env node
// Committed rather than built: npm links a workspace's bin only if the file exists at install
// time, so on a fresh clone `npm ci` links this one, and it runs the build once there is one.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const built = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write('spire-csi-driver: not built yet (driver/dist/cli.js is missing); run `npm run build` at the repository root first\n');
  process.exit(1);
}
await import(built.href);
