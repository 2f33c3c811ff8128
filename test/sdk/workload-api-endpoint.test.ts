/**
 * Endpoint URIs by the SPIFFE Workload Endpoint and Broker Endpoint rules (§4 of each), and the
 * reconnect backoff. Pure: no sockets.
 */
import { describe, expect, it } from 'vitest';
import { parseEndpointUri, WorkloadApiError } from '@spire-csi/sdk/workload-api';
import { ReconnectBackoff } from '../../sdk/src/workload-api/backoff.js';

describe('parseEndpointUri', () => {
  it.each([
    ['unix:///run/spire/agent.sock', { scheme: 'unix', path: '/run/spire/agent.sock', grpcTarget: 'unix:///run/spire/agent.sock' }],
    ['unix:/run/spire/agent.sock', { scheme: 'unix', path: '/run/spire/agent.sock', grpcTarget: 'unix:///run/spire/agent.sock' }],
    ['unix:///run/spire%20x/agent.sock', { scheme: 'unix', path: '/run/spire x/agent.sock', grpcTarget: 'unix:///run/spire x/agent.sock' }],
    ['tcp://127.0.0.1:8081', { scheme: 'tcp', host: '127.0.0.1', port: 8081, grpcTarget: 'ipv4:127.0.0.1:8081' }],
    ['tcp://127.0.0.1:8081/', { scheme: 'tcp', host: '127.0.0.1', port: 8081, grpcTarget: 'ipv4:127.0.0.1:8081' }],
    ['tcp://[::1]:8081', { scheme: 'tcp', host: '::1', port: 8081, grpcTarget: 'ipv6:[::1]:8081' }],
  ])('accepts %s', (value, expected) => {
    expect(parseEndpointUri(value)).toEqual(expected);
  });

  it('accepts a DNS name only where the Broker Endpoint spec allows it', () => {
    expect(parseEndpointUri('tcp://broker.example.com:8443', { allowDnsNames: true })).toEqual({
      scheme: 'tcp',
      host: 'broker.example.com',
      port: 8443,
      grpcTarget: 'dns:broker.example.com:8443',
    });
    expect(() => parseEndpointUri('tcp://broker.example.com:8443')).toThrow(/must name an IP address as the host, not a DNS name/);
  });

  it.each([
    ['', 'is empty'],
    ['/run/spire/agent.sock', 'is not a URI'],
    ['unix://run/spire/agent.sock', 'must not have an authority (host) for the unix scheme; use three slashes'],
    ['unix:agent.sock', 'must give the absolute path of the socket'],
    ['unix:///', 'must give the absolute path of the socket'],
    ['unix:///run/agent.sock?x=1', 'must not have a query'],
    ['unix:///run/agent.sock#frag', 'must not have a fragment'],
    ['unix:///run/%zz', 'has a malformed percent-encoding in its path'],
    ['tcp://user@127.0.0.1:8081', 'must not have user info'],
    ['tcp://127.0.0.1', 'must name a port'],
    ['tcp://127.0.0.1:0', 'must name a port from 1 to 65535'],
    ['tcp://127.0.0.1:8081/foo', 'must not have a path for the tcp scheme'],
    ['http://127.0.0.1:8081', 'has the scheme "http"; only unix and tcp are allowed'],
  ])('refuses %j: %s', (value, problem) => {
    let thrown: unknown;
    try {
      parseEndpointUri(value, { what: '--workload-api' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(WorkloadApiError);
    expect((thrown as WorkloadApiError).kind).toBe('config');
    expect((thrown as WorkloadApiError).message).toBe(
      `workloadapi: --workload-api ${JSON.stringify(value)} ${problem} (expected unix:///absolute/path/to/socket or tcp://IP:port)`,
    );
  });

  it('names the Broker Endpoint form in the fix when DNS names are allowed', () => {
    expect(() => parseEndpointUri('tcp://broker', { what: '--broker-endpoint', allowDnsNames: true })).toThrow(
      'workloadapi: --broker-endpoint "tcp://broker" must name a port (expected unix:///absolute/path/to/socket or tcp://host:port)',
    );
    expect(() => parseEndpointUri('tcp://bad_name:1', { allowDnsNames: true })).toThrow(/must name an IP address or a valid DNS name/);
  });
});

describe('reconnect backoff', () => {
  it('doubles up to the cap, each delay in the upper half of its step, and starts over after reset()', () => {
    const low = new ReconnectBackoff({ initialMs: 100, maxMs: 1_000 }, () => 0);
    expect([1, 2, 3, 4, 5, 6].map(() => low.next())).toEqual([50, 100, 200, 400, 500, 500]);
    const high = new ReconnectBackoff({ initialMs: 100, maxMs: 1_000 }, () => 0.999999);
    expect([1, 2, 3, 4, 5, 6].map(() => high.next())).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    high.reset();
    expect(high.next()).toBe(100);
  });
});
