import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../driver/src/config/options.js';
import { devAgentHelp, parseDevAgentArgs, runDevAgent } from '../../dev/src/dev-agent/main.js';
import { waitFor } from '../helpers/wait-for.js';
import { k8s, rawClient, record } from '../helpers/agent-harness.js';

const base = ['--socket', '/run/dev/admin.sock', '--trust-domain', 'example.org', '--registrations', '/etc/regs.json'];

describe('dev-agent command line', () => {
  it('parses flags with defaults', () => {
    expect(parseDevAgentArgs(base, {})).toEqual({
      socketPath: '/run/dev/admin.sock',
      trustDomain: 'example.org',
      registrationsFile: '/etc/regs.json',
      svidTtlMs: 3_600_000,
      jwtSvidTtlMs: 300_000,
      logLevel: 'info',
    });
    expect(parseDevAgentArgs([...base, '--svid-ttl', '5m', '--trust-domain', 'spiffe://other.org'], {})).toMatchObject({
      svidTtlMs: 300_000,
      trustDomain: 'other.org',
    });
    expect(parseDevAgentArgs(['--help'], {})).toBeNull();
    expect(devAgentHelp()).toMatch(/DEVELOPMENT ONLY/);
  });

  it.each([
    [['--socket', 'rel.sock', '--trust-domain', 'example.org', '--registrations', 'r.json'], /--socket must be an absolute path/],
    [[...base, '--trust-domain', 'Example.org'], /--trust-domain: /],
    [[...base, '--svid-ttl', 'soon'], /--svid-ttl/],
    [[...base, '--svid-ttl', '500ms'], /at least 1s/],
    [['--socket', '/a.sock', '--trust-domain', 'example.org'], /--registrations/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseDevAgentArgs(argv, {})).toThrow(message);
  });
});

describe('runDevAgent', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = '';
  });

  const quiet = { debug() {}, info() {}, warn() {}, error() {} };

  it('serves until SIGTERM and reloads registrations on SIGHUP', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spire-csi-devcli-'));
    const socket = join(dir, 'admin.sock');
    const file = join(dir, 'regs.json');
    await writeFile(file, JSON.stringify({ entries: [] }));
    const signals = new EventEmitter();
    const running = runDevAgent(['--socket', socket, '--trust-domain', 'example.org', '--registrations', file], {}, {
      signals,
      stdout: () => {},
      logger: quiet,
    });
    const client = rawClient(socket);
    try {
      const svids = await waitFor(
        async () => {
          const r = record(client.SubscribeToX509SVIDs({ selectors: k8s('ns:a') }));
          await waitFor(() => r.messages.length > 0 || r.status !== null);
          return r.messages.length > 0 ? r : null;
        },
        { message: 'the agent to serve', intervalMs: 100 },
      );
      expect(svids.messages[0]!.x509_svids).toEqual([]);
      await writeFile(file, JSON.stringify({ entries: [{ spiffeId: 'spiffe://example.org/a', selectors: ['k8s:ns:a'] }] }));
      signals.emit('SIGHUP');
      await waitFor(() => svids.messages.length > 1, { message: 'update after SIGHUP' });
      expect(svids.messages[1]!.x509_svids).toHaveLength(1);
      signals.emit('SIGTERM');
      await expect(running).resolves.toBe(0);
      await waitFor(() => svids.status, { message: 'stream ended by stop' });
    } finally {
      client.close();
      signals.emit('SIGTERM');
    }
  });

  it('fails with a ConfigError naming the file when registrations are invalid', async () => {
    dir = await mkdtemp(join(tmpdir(), 'spire-csi-devcli-'));
    const file = join(dir, 'regs.json');
    await writeFile(file, '{"entries": [{"spiffeId": "spiffe://example.org/a", "selectors": []}]}');
    const argv = ['--socket', join(dir, 'admin.sock'), '--trust-domain', 'example.org', '--registrations', file];
    const io = { signals: new EventEmitter(), stdout: () => {}, logger: quiet };
    await expect(runDevAgent(argv, {}, io)).rejects.toThrow(ConfigError);
    await expect(runDevAgent(argv, {}, io)).rejects.toThrow(/regs\.json: registrations: entries\[0\]\.selectors/);
    const missing = ['--socket', join(dir, 'admin.sock'), '--trust-domain', 'example.org', '--registrations', join(dir, 'nope.json')];
    await expect(runDevAgent(missing, {}, io)).rejects.toThrow(/cannot read/);
  });

  it('prints help', async () => {
    let out = '';
    const code = await runDevAgent(['--help'], {}, { signals: new EventEmitter(), stdout: (t) => (out += t) });
    expect(code).toBe(0);
    expect(out).toMatch(/--trust-domain/);
  });
});
