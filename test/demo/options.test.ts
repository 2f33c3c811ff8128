import { describe, expect, it } from 'vitest';
import { DemoUsageError } from '../../dev/src/demo/errors.js';
import { DEMO_HELP, parseDemoArgs } from '../../dev/src/demo/options.js';

describe('demo command line', () => {
  it('has defaults that run until Ctrl-C', () => {
    expect(parseDemoArgs([])).toEqual({
      rotationMs: 10_000,
      trustDomain: 'example.org',
      parentFolder: null,
      durationMs: null,
      rotations: null,
      plain: false,
      keepLogs: false,
      identityApi: 'delegated',
    });
  });

  it('reads every knob', () => {
    expect(
      parseDemoArgs(['--rotation', '3s', '--trust-domain', 'spiffe://acme.test', '--folder', '/tmp/x', '--duration', '1m',
        '--rotations', '4', '--plain', '--keep-logs', '--identity-api', 'broker']),
    ).toEqual({
      rotationMs: 3_000,
      trustDomain: 'acme.test',
      parentFolder: '/tmp/x',
      durationMs: 60_000,
      rotations: 4,
      plain: true,
      keepLogs: true,
      identityApi: 'broker',
    });
  });

  it('returns null for --help, whose text names every knob', () => {
    expect(parseDemoArgs(['--help'])).toBeNull();
    for (const knob of ['--rotation', '--trust-domain', '--folder', '--duration', '--rotations', '--plain', '--keep-logs', '--identity-api']) {
      expect(DEMO_HELP).toContain(knob);
    }
  });

  it.each([
    [['--rotation', 'fast'], '--rotation'],
    [['--rotation', '1s'], 'at least 2s'],
    [['--rotations', '0'], '--rotations'],
    [['--rotations', '2.5'], '--rotations'],
    [['--duration', '10'], '--duration'],
    [['--trust-domain', 'Not A Domain'], '--trust-domain'],
    [['--folder', ''], '--folder'],
    [['--identity-api', 'spiffe'], '--identity-api must be one of delegated, broker, got "spiffe"'],
    [['--identity-api', ''], '--identity-api'],
    [['--bogus'], '--help'],
  ])('rejects %j naming the problem', (argv, fragment) => {
    expect(() => parseDemoArgs(argv)).toThrow(DemoUsageError);
    expect(() => parseDemoArgs(argv)).toThrow(fragment);
  });
});
