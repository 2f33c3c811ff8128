/**
 * Endpoint URIs as the SPIFFE Workload Endpoint and Broker Endpoint specs define them (§4 of each):
 * `unix:///absolute/path` (no authority, nothing but the path) or `tcp://host:port` (nothing but
 * host and port; the host is an IP address, or for the Broker Endpoint also a DNS name). Pure:
 * the result says how @grpc/grpc-js names the same target.
 */
import { isIP } from 'node:net';
import { WorkloadApiError } from './errors.js';

/** Options of {@link parseEndpointUri}. */
export interface ParseEndpointOptions {
  /** What the value is, for the message (`--broker-endpoint`, `SPIFFE_ENDPOINT_SOCKET`, ...). Default `Workload API endpoint`. */
  readonly what?: string;
  /** Accept DNS names as tcp hosts (the Broker Endpoint spec does; the Workload Endpoint spec does not). */
  readonly allowDnsNames?: boolean;
}

/** A parsed endpoint URI. */
export interface EndpointUri {
  /** `unix` or `tcp`. */
  readonly scheme: 'unix' | 'tcp';
  /** The socket's absolute path (`unix`). */
  readonly path?: string;
  /** The IP address (without brackets) or DNS name (`tcp`). */
  readonly host?: string;
  /** The TCP port (`tcp`). */
  readonly port?: number;
  /** The same endpoint as a @grpc/grpc-js target (`unix:///p`, `ipv4:10.0.0.1:8081`, `ipv6:[::1]:8081`, `dns:host:8443`). */
  readonly grpcTarget: string;
}

/** RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens. */
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * Parses an endpoint URI by the SPIFFE Workload/Broker Endpoint rules. Throws a
 * {@link WorkloadApiError} of kind `config` whose message names `what`, says which rule the value
 * breaks and what a valid value looks like.
 */
export function parseEndpointUri(value: string, options: ParseEndpointOptions = {}): EndpointUri {
  const what = options.what ?? 'Workload API endpoint';
  const allowDns = options.allowDnsNames === true;
  const expected = `expected unix:///absolute/path/to/socket or tcp://${allowDns ? 'host' : 'IP'}:port`;
  const fail = (problem: string): WorkloadApiError =>
    new WorkloadApiError('config', `${what} ${JSON.stringify(value)} ${problem} (${expected})`);

  if (typeof value !== 'string' || value.trim() === '') throw fail('is empty');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw fail('is not a URI');
  }
  if (url.search !== '' || value.includes('?')) throw fail('must not have a query');
  if (url.hash !== '' || value.includes('#')) throw fail('must not have a fragment');
  if (url.username !== '' || url.password !== '') throw fail('must not have user info');

  if (url.protocol === 'unix:') {
    if (url.host !== '') throw fail('must not have an authority (host) for the unix scheme; use three slashes');
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      throw fail('has a malformed percent-encoding in its path');
    }
    if (!path.startsWith('/') || path === '/') throw fail('must give the absolute path of the socket');
    if (path.includes('\0')) throw fail('must not contain a NUL byte');
    return Object.freeze({ scheme: 'unix', path, grpcTarget: `unix://${path}` });
  }

  if (url.protocol === 'tcp:') {
    if (url.pathname !== '' && url.pathname !== '/') throw fail('must not have a path for the tcp scheme');
    if (url.hostname === '') throw fail('must name a host');
    if (url.port === '') throw fail('must name a port');
    const port = Number(url.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw fail('must name a port from 1 to 65535');
    // WHATWG URL keeps the brackets of an IPv6 literal in hostname.
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const family = isIP(host);
    if (family === 4) return Object.freeze({ scheme: 'tcp', host, port, grpcTarget: `ipv4:${host}:${port}` });
    if (family === 6) return Object.freeze({ scheme: 'tcp', host, port, grpcTarget: `ipv6:[${host}]:${port}` });
    if (!allowDns) throw fail('must name an IP address as the host, not a DNS name');
    if (!DNS_NAME.test(host)) throw fail('must name an IP address or a valid DNS name as the host');
    return Object.freeze({ scheme: 'tcp', host, port, grpcTarget: `dns:${host}:${port}` });
  }

  throw fail(`has the scheme "${url.protocol.slice(0, -1)}"; only unix and tcp are allowed`);
}
