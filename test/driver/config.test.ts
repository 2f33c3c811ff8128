import { describe, expect, it } from 'vitest';
import { driverHelp, parseDriverConfig } from '../../driver/src/config/driver-config.js';
import { parseDuration } from '../../driver/src/config/duration.js';

const required = ['--csi-endpoint', 'unix:///run/csi/csi.sock', '--node-id', 'node-a', '--admin-socket', '/run/spire/admin.sock'];

describe('driver command line', () => {
  it('applies documented defaults', () => {
    const config = parseDriverConfig(required, {});
    expect(config).toEqual({
      csiSocketPath: '/run/csi/csi.sock',
      nodeId: 'node-a',
      adminSocketPath: '/run/spire/admin.sock',
      kubeletRoot: '/var/lib/kubelet',
      stateDir: '/var/lib/spire-csi',
      pluginName: 'csi.spire.io',
      publishTimeoutMs: 30_000,
      logLevel: 'info',
      metricsAddress: null,
      selinuxContext: { mode: 'auto' },
    });
  });

  it('reads every flag from its environment variable, and the flag wins', () => {
    const env = {
      SPIRE_CSI_ENDPOINT: 'unix:///e/csi.sock',
      SPIRE_CSI_NODE_ID: 'env-node',
      SPIRE_CSI_ADMIN_SOCKET: '/e/admin.sock',
      SPIRE_CSI_KUBELET_ROOT: '/k/',
      SPIRE_CSI_STATE_DIR: '/s',
      SPIRE_CSI_PLUGIN_NAME: 'x.example.org',
      SPIRE_CSI_PUBLISH_TIMEOUT: '5s',
      SPIRE_CSI_LOG_LEVEL: 'debug',
      SPIRE_CSI_METRICS_ADDRESS: '127.0.0.1:9809',
      SPIRE_CSI_SELINUX_CONTEXT: 'none',
    };
    expect(parseDriverConfig([], env)).toMatchObject({
      csiSocketPath: '/e/csi.sock',
      nodeId: 'env-node',
      kubeletRoot: '/k',
      stateDir: '/s',
      pluginName: 'x.example.org',
      publishTimeoutMs: 5_000,
      logLevel: 'debug',
      metricsAddress: '127.0.0.1:9809',
      selinuxContext: { mode: 'none' },
    });
    expect(parseDriverConfig(['--node-id', 'flag-node'], env)?.nodeId).toBe('flag-node');
  });

  it.each([
    ['missing node id', ['--csi-endpoint', 'unix:///a.sock', '--admin-socket', '/a'], /--node-id \(or SPIRE_CSI_NODE_ID\) is required/],
    ['tcp endpoint', ['--csi-endpoint', 'tcp://1.2.3.4:1', '--node-id', 'n', '--admin-socket', '/a'], /unix:\/\/\/absolute/],
    ['relative admin socket', ['--csi-endpoint', 'unix:///a.sock', '--node-id', 'n', '--admin-socket', 'a.sock'], /--admin-socket must be an absolute path/],
    ['bad timeout', [...required, '--publish-timeout', '30'], /--publish-timeout: "30" is not a duration/],
    ['bad log level', [...required, '--log-level', 'loud'], /--log-level "loud"/],
    ['unknown flag', [...required, '--nope', 'x'], /--help/],
    ['bad metrics address', [...required, '--metrics-address', 'localhost'], /host:port/],
    ['an SELinux context that is not a label', [...required, '--selinux-context', 'enforcing'], /--selinux-context "enforcing" is neither auto, none nor an SELinux label/],
  ])('rejects %s', (_name, argv, message) => {
    expect(() => parseDriverConfig(argv, {})).toThrow(message);
  });

  it('returns null for --help and the help lists every flag with its variable', () => {
    expect(parseDriverConfig(['--help'], {})).toBeNull();
    const help = driverHelp();
    for (const flag of ['csi-endpoint', 'node-id', 'admin-socket', 'kubelet-root', 'state-dir', 'plugin-name', 'publish-timeout', 'log-level']) {
      expect(help).toContain(`--${flag}`);
    }
    expect(help).toContain('SPIRE_CSI_ADMIN_SOCKET');
  });
});

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1_500],
  ])('%s', (text, ms) => expect(parseDuration(text)).toBe(ms));
  it.each(['', '10', 's', '-1s', '0s', '1d'])('rejects "%s"', (text) => expect(() => parseDuration(text)).toThrow());
});
