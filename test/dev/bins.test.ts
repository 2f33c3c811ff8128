import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/*
 * The committed bin stubs and the driver CLI's hand-over of `dev-agent` to @spire-csi/dev, run as
 * a user runs them: built code in child processes. Skipped until `npm run build` has run.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DRIVER_BIN = join(REPO, 'driver', 'bin', 'spire-csi-driver.js');
const DEV_AGENT_BIN = join(REPO, 'dev', 'bin', 'spire-csi-dev-agent.js');
const DEMO_BIN = join(REPO, 'dev', 'bin', 'spire-csi-demo.js');
const built = ['driver/dist/cli.js', 'dev/dist/dev-agent/main.js', 'dev/dist/dev-agent/cli.js', 'dev/dist/demo/main.js'].every((p) =>
  existsSync(join(REPO, p)),
);
if (!built) console.warn('[dev] bin tests skipped: run `npm run build` first');

function run(args: readonly string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 20_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const scratch = mkdtempSync(join(tmpdir(), 'spire-csi-bins-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A copy of the built driver package next to the repository's node_modules, minus @spire-csi/dev:
 * what an installation without the dev workspace (the image, a packed driver) looks like.
 */
function driverWithout(name: string, devPackage: 'absent' | 'unbuilt'): string {
  const root = join(scratch, name);
  mkdirSync(join(root, 'node_modules', '@spire-csi'), { recursive: true });
  for (const entry of readdirSync(join(REPO, 'node_modules'))) {
    if (entry !== '@spire-csi' && entry !== '.bin') symlinkSync(join(REPO, 'node_modules', entry), join(root, 'node_modules', entry));
  }
  symlinkSync(join(REPO, 'sdk'), join(root, 'node_modules', '@spire-csi', 'sdk'));
  if (devPackage === 'unbuilt') {
    mkdirSync(join(root, 'node_modules', '@spire-csi', 'dev'));
    cpSync(join(REPO, 'dev', 'package.json'), join(root, 'node_modules', '@spire-csi', 'dev', 'package.json'));
  }
  for (const part of ['package.json', 'bin', 'dist']) cpSync(join(REPO, 'driver', part), join(root, 'driver', part), { recursive: true });
  return join(root, 'driver', 'bin', 'spire-csi-driver.js');
}

describe.skipIf(!built)('bins', () => {
  it('spire-csi-driver --help prints the driver usage', () => {
    const { code, stdout } = run([DRIVER_BIN, '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: spire-csi-driver');
  });

  it('spire-csi-driver dev-agent hands over to @spire-csi/dev', () => {
    const help = run([DRIVER_BIN, 'dev-agent', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('DEVELOPMENT ONLY');
    // A bad flag is the dev agent's ConfigError, which the driver CLI must recognise: exit 2, no stack.
    const bad = run([DRIVER_BIN, 'dev-agent', '--socket', 'relative.sock', '--trust-domain', 'example.org', '--registrations', '/none.json']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--socket must be an absolute path');
    expect(bad.stderr).not.toContain('    at ');
  });

  it('spire-csi-dev-agent and spire-csi-demo run on their own', () => {
    const agent = run([DEV_AGENT_BIN, '--help']);
    expect(agent.code).toBe(0);
    expect(agent.stdout).toContain('DEVELOPMENT ONLY');
    expect(run([DEV_AGENT_BIN, '--no-such-flag']).code).toBe(2);
    const demo = run([DEMO_BIN, '--help']);
    expect(demo.code).toBe(0);
    expect(demo.stdout).toContain('npm run demo');
  });

  it('says what to do when the dev package is not installed, or not built', () => {
    const absent = run([driverWithout('absent', 'absent'), 'dev-agent', '--help']);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/@spire-csi\/dev workspace, which is not installed here/);
    expect(absent.stderr).not.toContain('    at ');
    const unbuilt = run([driverWithout('unbuilt', 'unbuilt'), 'dev-agent', '--help']);
    expect(unbuilt.code).toBe(1);
    expect(unbuilt.stderr).toContain('run `npm run build`');
    // The driver itself still works there.
    expect(run([driverWithout('driver-only', 'absent'), '--help']).code).toBe(0);
  });

  it('a bin stub without a build says to run npm run build', () => {
    const bin = join(scratch, 'stub', 'bin', 'spire-csi-driver.js');
    cpSync(join(REPO, 'driver', 'package.json'), join(scratch, 'stub', 'package.json'));
    cpSync(DRIVER_BIN, bin);
    const { code, stderr } = run([bin, '--help']);
    expect(code).toBe(1);
    expect(stderr).toContain('run `npm run build`');
  });
});
