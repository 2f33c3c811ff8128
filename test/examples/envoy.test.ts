/**
 * examples/envoy checked structurally (Envoy is not installable here): the listener demands a
 * client certificate, the certificate, key and bundle come from the volume's split files through
 * file-based SDS with `watched_directory` (the only way Envoy re-reads them), and clients are
 * admitted by a URI SAN matcher on a SPIFFE ID. Field names are checked against the Envoy v3 API
 * so a typo (which Envoy would reject at startup) fails here.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SpiffeId, TrustDomain } from '@spire-csi/sdk';
import { examplePath } from './harness.js';

type Node = Record<string, unknown>;

const MOUNT = '/run/spiffe/credentials';
const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/** Fields of the v3 messages the example uses (envoy/extensions/transport_sockets/tls/v3/*.proto and friends). */
const FIELDS = {
  DownstreamTlsContext: ['@type', 'common_tls_context', 'require_client_certificate', 'require_sni', 'session_ticket_keys', 'session_timeout', 'ocsp_staple_policy', 'full_scan_certs_on_sni_mismatch', 'disable_stateless_session_resumption', 'disable_stateful_session_resumption', 'session_ticket_keys_sds_secret_config', 'prefer_client_ciphers'],
  CommonTlsContext: ['tls_params', 'tls_certificates', 'tls_certificate_sds_secret_configs', 'tls_certificate_provider_instance', 'tls_certificate_certificate_provider', 'tls_certificate_certificate_provider_instance', 'validation_context', 'validation_context_sds_secret_config', 'combined_validation_context', 'validation_context_certificate_provider', 'validation_context_certificate_provider_instance', 'alpn_protocols', 'custom_handshaker', 'key_log', 'custom_tls_certificate_selector'],
  CombinedValidationContext: ['default_validation_context', 'validation_context_sds_secret_config', 'validation_context_certificate_provider', 'validation_context_certificate_provider_instance'],
  SdsSecretConfig: ['name', 'sds_config'],
  ConfigSource: ['path', 'path_config_source', 'api_config_source', 'ads', 'self', 'initial_fetch_timeout', 'resource_api_version', 'authorities'],
  PathConfigSource: ['path', 'watched_directory'],
  Secret: ['@type', 'name', 'tls_certificate', 'session_ticket_keys', 'validation_context', 'generic_secret'],
  TlsCertificate: ['certificate_chain', 'private_key', 'pkcs12', 'watched_directory', 'private_key_provider', 'password', 'ocsp_staple', 'signed_certificate_timestamp'],
  CertificateValidationContext: ['trusted_ca', 'ca_certificate_provider_instance', 'watched_directory', 'verify_certificate_spki', 'verify_certificate_hash', 'match_typed_subject_alt_names', 'match_subject_alt_names', 'require_signed_certificate_timestamp', 'crl', 'allow_expired_certificate', 'trust_chain_verification', 'custom_validator_config', 'only_verify_leaf_cert_crl', 'max_verify_depth'],
  SubjectAltNameMatcher: ['san_type', 'matcher', 'oid'],
  StringMatcher: ['exact', 'prefix', 'suffix', 'safe_regex', 'contains', 'custom', 'ignore_case'],
  DataSource: ['filename', 'inline_bytes', 'inline_string', 'environment_variable', 'watched_directory'],
  WatchedDirectory: ['path'],
} as const;

function node(value: unknown, what: string): Node {
  expect(value, what).toBeTypeOf('object');
  expect(value, what).not.toBeNull();
  return value as Node;
}

function fieldsOf(value: unknown, message: keyof typeof FIELDS, what: string): Node {
  const n = node(value, what);
  const known: readonly string[] = FIELDS[message];
  const unknown = Object.keys(n).filter((key) => !known.includes(key));
  expect(unknown, `${what}: fields that are not in ${message}`).toEqual([]);
  return n;
}

function list(value: unknown, what: string): unknown[] {
  expect(Array.isArray(value), `${what} is a list`).toBe(true);
  return value as unknown[];
}

async function yamlFile(relative: string): Promise<Node> {
  return node(parse(await readFile(examplePath(relative), 'utf8')), relative);
}

/** Reads the single Secret of a file-based SDS resource file. */
async function sdsSecret(path: string): Promise<Node> {
  expect(dirname(path)).toBe('/etc/envoy/sds');
  const file = await yamlFile(`envoy/sds/${basename(path)}`);
  const resources = list(file.resources, `${path} resources`);
  // Envoy's filesystem SDS accepts exactly one secret per file.
  expect(resources).toHaveLength(1);
  const secret = fieldsOf(resources[0], 'Secret', path);
  expect(secret['@type']).toBe(SECRET_TYPE);
  return secret;
}

function pathSource(sdsConfig: unknown, what: string): string {
  const source = fieldsOf(sdsConfig, 'ConfigSource', what);
  expect(source.resource_api_version, `${what}.resource_api_version`).toBe('V3');
  const path = fieldsOf(source.path_config_source, 'PathConfigSource', `${what}.path_config_source`);
  expect(path.path, `${what}.path_config_source.path`).toBeTypeOf('string');
  return path.path as string;
}

function watchedMount(value: unknown, what: string): void {
  expect(fieldsOf(value, 'WatchedDirectory', what)).toEqual({ path: MOUNT });
}

function fileIn(value: unknown, name: string, what: string): void {
  expect(fieldsOf(value, 'DataSource', what)).toEqual({ filename: `${MOUNT}/${name}` });
}

describe('examples/envoy', () => {
  let tls: Node;
  let common: Node;
  let chain: Node;

  beforeAll(async () => {
    const config = await yamlFile('envoy/envoy.yaml');
    const listeners = list(node(config.static_resources, 'static_resources').listeners, 'listeners');
    expect(listeners).toHaveLength(1);
    const chains = list(node(listeners[0], 'listener').filter_chains, 'filter_chains');
    expect(chains).toHaveLength(1);
    chain = node(chains[0], 'filter chain');
    const socket = node(chain.transport_socket, 'transport_socket');
    expect(socket.name).toBe('envoy.transport_sockets.tls');
    tls = fieldsOf(socket.typed_config, 'DownstreamTlsContext', 'typed_config');
    common = fieldsOf(tls.common_tls_context, 'CommonTlsContext', 'common_tls_context');
  });

  it('terminates TLS on the listener and requires a client certificate', () => {
    expect(tls['@type']).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
    expect(tls.require_client_certificate).toBe(true);
    expect(node(common.tls_params, 'tls_params').tls_minimum_protocol_version).toBe('TLSv1_2');
  });

  it('takes no certificate inline or statically: those would never be re-read', () => {
    expect(common.tls_certificates).toBeUndefined();
    expect(common.validation_context).toBeUndefined();
  });

  it('serves svid.pem and svid_key.pem through file-based SDS watching the volume', async () => {
    const configs = list(common.tls_certificate_sds_secret_configs, 'tls_certificate_sds_secret_configs');
    expect(configs).toHaveLength(1);
    const config = fieldsOf(configs[0], 'SdsSecretConfig', 'tls_certificate_sds_secret_configs[0]');
    const secret = await sdsSecret(pathSource(config.sds_config, 'tls_certificate_sds_secret_configs[0].sds_config'));
    expect(secret.name).toBe(config.name);
    const certificate = fieldsOf(secret.tls_certificate, 'TlsCertificate', 'tls_certificate');
    fileIn(certificate.certificate_chain, 'svid.pem', 'certificate_chain');
    fileIn(certificate.private_key, 'svid_key.pem', 'private_key');
    watchedMount(certificate.watched_directory, 'tls_certificate.watched_directory');
  });

  it('verifies clients with bundle.pem through file-based SDS watching the volume', async () => {
    const combined = fieldsOf(common.combined_validation_context, 'CombinedValidationContext', 'combined_validation_context');
    const config = fieldsOf(combined.validation_context_sds_secret_config, 'SdsSecretConfig', 'validation_context_sds_secret_config');
    const secret = await sdsSecret(pathSource(config.sds_config, 'validation_context_sds_secret_config.sds_config'));
    expect(secret.name).toBe(config.name);
    const validation = fieldsOf(secret.validation_context, 'CertificateValidationContext', 'validation_context');
    fileIn(validation.trusted_ca, 'bundle.pem', 'trusted_ca');
    watchedMount(validation.watched_directory, 'validation_context.watched_directory');
    expect(validation.trust_chain_verification ?? 'VERIFY_TRUST_CHAIN').toBe('VERIFY_TRUST_CHAIN');
  });

  it('admits clients by a URI SAN matcher on a SPIFFE ID', () => {
    const combined = node(common.combined_validation_context, 'combined_validation_context');
    const defaults = fieldsOf(combined.default_validation_context, 'CertificateValidationContext', 'default_validation_context');
    const matchers = list(defaults.match_typed_subject_alt_names, 'match_typed_subject_alt_names');
    expect(matchers.length).toBeGreaterThan(0);
    for (const [i, entry] of matchers.entries()) {
      const matcher = fieldsOf(entry, 'SubjectAltNameMatcher', `match_typed_subject_alt_names[${i}]`);
      expect(matcher.san_type).toBe('URI');
      const string = fieldsOf(matcher.matcher, 'StringMatcher', `match_typed_subject_alt_names[${i}].matcher`);
      expect(string.ignore_case ?? false, 'SPIFFE IDs are case-sensitive').toBe(false);
      if ('exact' in string) {
        expect(SpiffeId.parse(string.exact as string).toString()).toBe(string.exact);
      } else {
        // A prefix must end at a path boundary: spiffe://example.org would also match spiffe://example.org.evil.
        const prefix = string.prefix as string;
        expect(prefix).toMatch(/^spiffe:\/\/[^/]+\//);
        TrustDomain.parse(prefix.slice(0, -1));
      }
    }
  });

  it('forwards the verified client identity to the application and drops a forged one', () => {
    const filters = list(chain.filters, 'filters');
    const manager = node(node(filters[0], 'filters[0]').typed_config, 'http_connection_manager');
    expect(manager['@type']).toBe('type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
    expect(manager.forward_client_cert_details).toBe('SANITIZE_SET');
    expect(manager.set_current_client_cert_details).toEqual({ uri: true });
  });
});
