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
      identityApi: 'delegated',
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

const csi = ['--csi-endpoint', 'unix:///run/csi/csi.sock', '--node-id', 'node-a'];
const broker = [...csi, '--identity-api', 'broker', '--broker-endpoint', 'unix:///run/spire/broker.sock', '--workload-api', 'unix:///run/spire/api.sock'];

describe('driver command line: --identity-api broker', () => {
  it('needs neither --admin-socket nor its variable, and keeps the endpoints as given', () => {
    expect(parseDriverConfig(broker, {})).toMatchObject({
      identityApi: 'broker',
      adminSocketPath: '',
      broker: { endpoint: 'unix:///run/spire/broker.sock', target: 'unix:///run/spire/broker.sock', workloadApi: 'unix:///run/spire/api.sock' },
    });
    expect(parseDriverConfig(broker, {})?.broker).not.toHaveProperty('brokerId');
  });

  it('reads SPIRE_CSI_* first, then the standard SPIFFE_BROKER_SOCKET and SPIFFE_ENDPOINT_SOCKET', () => {
    const standard = { SPIRE_CSI_IDENTITY_API: 'broker', SPIFFE_BROKER_SOCKET: 'unix:///std/broker.sock', SPIFFE_ENDPOINT_SOCKET: 'unix:///std/api.sock' };
    expect(parseDriverConfig(csi, standard)?.broker).toMatchObject({ endpoint: 'unix:///std/broker.sock', workloadApi: 'unix:///std/api.sock' });
    const ours = { ...standard, SPIRE_CSI_BROKER_ENDPOINT: 'unix:///ours/broker.sock', SPIRE_CSI_WORKLOAD_API: 'unix:///ours/api.sock', SPIRE_CSI_BROKER_ID: 'spiffe://example.org/spire/agent/x' };
    expect(parseDriverConfig(csi, ours)?.broker).toEqual({
      endpoint: 'unix:///ours/broker.sock',
      target: 'unix:///ours/broker.sock',
      workloadApi: 'unix:///ours/api.sock',
      brokerId: 'spiffe://example.org/spire/agent/x',
    });
    expect(parseDriverConfig([...csi, '--broker-endpoint', 'tcp://10.0.0.1:8443'], ours)?.broker?.target).toBe('ipv4:10.0.0.1:8443');
  });

  it('accepts a DNS name for the broker endpoint (it is authenticated) but not for the Workload API', () => {
    const dns = [...csi, '--identity-api', 'broker', '--broker-endpoint', 'tcp://spire-agent.spire.svc:8443', '--workload-api', 'unix:///w.sock'];
    expect(parseDriverConfig(dns, {})?.broker?.target).toBe('dns:spire-agent.spire.svc:8443');
    const dnsApi = [...csi, '--identity-api', 'broker', '--broker-endpoint', 'unix:///b.sock', '--workload-api', 'tcp://agent.local:1'];
    expect(() => parseDriverConfig(dnsApi, {})).toThrow(/--workload-api "tcp:\/\/agent\.local:1" must name an IP address as the host/);
  });

  it.each([
    ['an unknown API', [...csi, '--identity-api', 'workload'], /--identity-api "workload" is not one of delegated, broker/],
    ['delegated without an admin socket', csi, /--admin-socket \(or SPIRE_CSI_ADMIN_SOCKET\) is required with --identity-api delegated/],
    [
      'broker without an endpoint',
      [...csi, '--identity-api', 'broker', '--workload-api', 'unix:///w.sock'],
      /--broker-endpoint \(or SPIRE_CSI_BROKER_ENDPOINT, else SPIFFE_BROKER_SOCKET\) is required with --identity-api broker/,
    ],
    [
      'broker without the Workload API',
      [...csi, '--identity-api', 'broker', '--broker-endpoint', 'unix:///b.sock'],
      /--workload-api \(or SPIRE_CSI_WORKLOAD_API, else SPIFFE_ENDPOINT_SOCKET\) is required with --identity-api broker/,
    ],
    ['a relative unix path', [...broker, '--broker-endpoint', 'unix://broker.sock'], /--broker-endpoint "unix:\/\/broker\.sock" must not have an authority/],
    ['a plain path', [...broker, '--broker-endpoint', '/run/broker.sock'], /--broker-endpoint "\/run\/broker\.sock" has the scheme|--broker-endpoint "\/run\/broker\.sock" is not a URI/],
    ['a tcp endpoint without a port', [...broker, '--broker-endpoint', 'tcp://10.0.0.1'], /--broker-endpoint "tcp:\/\/10\.0\.0\.1" must name a port/],
    ['an http endpoint', [...broker, '--workload-api', 'http://127.0.0.1:1'], /--workload-api "http:\/\/127\.0\.0\.1:1" has the scheme "http"; only unix and tcp/],
    ['a broker ID that is not a SPIFFE ID', [...broker, '--broker-id', 'agent-1'], /--broker-id "agent-1" is not a SPIFFE ID .*use spiffe:\/\/<trust domain>\/<path>/],
  ])('rejects %s, naming the flag', (_name, argv, message) => {
    expect(() => parseDriverConfig(argv, {})).toThrow(message);
  });

  it('lists the broker flags and their variables in --help', () => {
    const help = driverHelp();
    for (const flag of ['identity-api', 'broker-endpoint', 'workload-api', 'broker-id']) expect(help).toContain(`--${flag}`);
    expect(help).toContain('SPIRE_CSI_BROKER_ENDPOINT, else SPIFFE_BROKER_SOCKET');
    expect(help).toContain('SPIRE_CSI_WORKLOAD_API, else SPIFFE_ENDPOINT_SOCKET');
    expect(help).toContain('--identity-api broker');
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
