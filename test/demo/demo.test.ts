import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, it, type ExpectStatic, type TestContext } from 'vitest';
import { isRoot, mountsUnder, unmountUnder } from '../helpers/driver-harness.js';
import { waitFor } from '../helpers/wait-for.js';

const DEMO = fileURLToPath(new URL('../../dev/dist/demo/main.js', import.meta.url));
const NOBODY = 65_534;

/**
 * Whether an unprivileged user can run this Node binary on the built demo. CI's extra Node
 * versions and some checkouts live under /root (mode 0700), where `nobody` cannot reach them.
 */
function nobodyCanRunDemo(): string | null {
  const probe = spawnSync(process.execPath, ['-e', `require('node:fs').accessSync(${JSON.stringify(DEMO)}, 4)`], {
    uid: NOBODY,
    gid: NOBODY,
    stdio: 'ignore',
  });
  if (probe.error) return `user nobody cannot start ${process.execPath} (${(probe.error as NodeJS.ErrnoException).code})`;
  if (probe.status !== 0) return `user nobody cannot read ${DEMO}`;
  return null;
}

interface DemoRun {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  readonly exited: Promise<number | null>;
}

/**
 * A scratch parent folder for one test and a way to start the demo in it. When the test ends,
 * a demo still running is killed and anything it left (mounts included) is removed. Takes the
 * test's own onTestFinished: the global one may attach to another test when tests run concurrently.
 */
async function scratch(
  onTestFinished: TestContext['onTestFinished'],
): Promise<{ folder: string; start(args: readonly string[], as?: { uid: number; gid: number }): DemoRun }> {
  const folder = await mkdtemp(join(tmpdir(), 'spire-csi-demo-test-'));
  const runs: DemoRun[] = [];
  onTestFinished(async () => {
    for (const run of runs) {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
      await run.exited;
    }
    await unmountUnder(folder);
    await rm(folder, { recursive: true, force: true });
  });
  return {
    folder,
    start(args, as) {
      const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...as });
      let text = '';
      child.stdout!.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const run = { child, output: () => text, exited };
      runs.push(run);
      return run;
    },
  };
}

interface Rotation {
  readonly from: string;
  readonly to: string;
}

/** The client-side rotation lines of the plain output, in order. */
function clientRotations(output: string): Rotation[] {
  return [...output.matchAll(/rotation #\d+ client \S+ serial ([0-9A-F]+) -> ([0-9A-F]+)/g)].map((m) => ({ from: m[1]!, to: m[2]! }));
}

function summaryNumber(output: string, label: string): number {
  const match = new RegExp(`^\\s*${label}: (\\d+)`, 'm').exec(output);
  if (match === null) throw new Error(`no "${label}" line in the demo output:\n${output}`);
  return Number(match[1]);
}

async function expectCleanedUp(expect: ExpectStatic, folder: string): Promise<void> {
  expect(await mountsUnder(folder)).toEqual([]);
  expect(await readdir(folder)).toEqual([]);
}

// Concurrent: each run spends most of its time waiting for rotations, in its own folder.
describe.concurrent('npm run demo (the built demo)', () => {
  beforeAll(() => {
    if (!existsSync(DEMO)) throw new Error(`${DEMO} is missing: run \`npm run build\` first (\`npm test\` does)`);
  });

  it('--help lists the knobs', async ({ expect, onTestFinished }) => {
    const run = (await scratch(onTestFinished)).start(['--help']);
    expect(await run.exited).toBe(0);
    for (const knob of ['--rotation', '--trust-domain', '--folder', '--duration', '--rotations', '--plain', '--identity-api']) {
      expect(run.output()).toContain(knob);
    }
  });

  it('rejects a bad option, saying which', async ({ expect, onTestFinished }) => {
    const run = (await scratch(onTestFinished)).start(['--rotation', 'soon']);
    expect(await run.exited).toBe(2);
    expect(run.output()).toContain('--rotation');
  });

  it('runs until the client saw 3 rotations, never fails a request and leaves nothing behind', async ({ expect, onTestFinished }) => {
    const { folder, start } = await scratch(onTestFinished);
    const run = start(['--rotation', '2s', '--rotations', '3', '--plain', '--folder', folder]);
    const code = await run.exited;
    const output = run.output();
    expect(code, output).toBe(0);

    const rotations = clientRotations(output);
    expect(rotations.length, output).toBeGreaterThanOrEqual(3);
    for (const [i, rotation] of rotations.entries()) {
      expect(rotation.to).not.toBe(rotation.from);
      if (i > 0) expect(rotation.from).toBe(rotations[i - 1]!.to);
    }
    expect(new Set(rotations.map((r) => r.to)).size).toBe(rotations.length);
    expect(output).toContain('spiffe://example.org/ns/demo/sa/client');
    expect(output).toContain('spiffe://example.org/ns/demo/sa/server');

    expect(summaryNumber(output, 'rotations seen by the client SDK')).toBeGreaterThanOrEqual(3);
    expect(summaryNumber(output, 'requests ok')).toBeGreaterThan(0);
    expect(summaryNumber(output, 'requests failed')).toBe(0);
    expect(output).not.toContain('request failed');
    expect(output).toMatch(/logs were in: \S+demo\.log/);
    await expectCleanedUp(expect, folder);
  });

  it('--identity-api broker: the same run through the Broker API over mTLS, and nothing left behind', async ({ expect, onTestFinished }) => {
    const { folder, start } = await scratch(onTestFinished);
    const run = start(['--identity-api', 'broker', '--rotation', '2s', '--rotations', '3', '--plain', '--folder', folder]);
    const code = await run.exited;
    const output = run.output();
    expect(code, output).toBe(0);

    // The driver got its own SVID from the Workload API and the pods' identities from the Broker endpoint.
    expect(output).toMatch(/dev agent serving the Workload API on \S+\/api\.sock \(the driver's own SVID: spiffe:\/\/example\.org\/spire-csi\/driver\)/);
    expect(output).toMatch(/dev agent serving the SPIFFE Broker API on \S+\/broker\.sock \(mutual TLS/);
    expect(output).toContain('identities through the Broker API');
    expect(output).not.toContain('Delegated Identity API');
    expect(output).toMatch(/kubelet published the server pod's volume/);
    expect(output).toMatch(/kubelet published the client pod's volume/);

    const rotations = clientRotations(output);
    expect(rotations.length, output).toBeGreaterThanOrEqual(3);
    for (const [i, rotation] of rotations.entries()) {
      expect(rotation.to).not.toBe(rotation.from);
      if (i > 0) expect(rotation.from).toBe(rotations[i - 1]!.to);
    }
    expect(output).toContain('spiffe://example.org/ns/demo/sa/client');
    expect(output).toContain('spiffe://example.org/ns/demo/sa/server');
    expect(summaryNumber(output, 'requests ok')).toBeGreaterThan(0);
    expect(summaryNumber(output, 'requests failed')).toBe(0);
    expect(output).toContain('cleanup: volumes unpublished and unmounted');
    await expectCleanedUp(expect, folder);
  });

  it('stops on SIGINT with exit 0 and cleans up', async ({ expect, onTestFinished }) => {
    const { folder, start } = await scratch(onTestFinished);
    const run = start(['--rotation', '2s', '--plain', '--folder', folder]);
    await waitFor(() => run.output().includes('client pod: a request every') || run.child.exitCode !== null, {
      timeoutMs: 20_000,
      message: 'the demo to start its client',
    });
    expect(run.child.exitCode, run.output()).toBeNull();
    if (isRoot) expect((await mountsUnder(folder)).length).toBe(2);
    run.child.kill('SIGINT');
    const code = await run.exited;
    const output = run.output();
    expect(code, output).toBe(0);
    expect(output).toContain('stopping: SIGINT received');
    expect(summaryNumber(output, 'requests failed')).toBe(0);
    await expectCleanedUp(expect, folder);
  });

  it.skipIf(!isRoot)('without root, says so and uses plain folders, and still cleans up', async ({ expect, onTestFinished, skip }) => {
    const unreachable = nobodyCanRunDemo();
    if (unreachable !== null) {
      console.log(`skipping the non-root demo run: ${unreachable}`);
      skip(unreachable);
    }
    const { folder, start } = await scratch(onTestFinished);
    await chown(folder, NOBODY, NOBODY);
    const run = start(['--rotation', '2s', '--rotations', '1', '--plain', '--folder', folder], { uid: NOBODY, gid: NOBODY });
    const code = await run.exited;
    const output = run.output();
    expect(code, output).toBe(0);
    expect(output).toContain('not running as root');
    expect(output).toMatch(/published the client pod's volume \(folder\)/);
    expect(clientRotations(output).length).toBeGreaterThanOrEqual(1);
    expect(summaryNumber(output, 'requests failed')).toBe(0);
    await expectCleanedUp(expect, folder);
  });
});
