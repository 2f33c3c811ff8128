import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PackageDefinition } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultProtoDir, loadProtos, ProtoLoadError, type LoadedProtos } from '../../driver/src/proto/load.js';

const REPO_PROTO = fileURLToPath(new URL('../../proto', import.meta.url));

interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType: MessageDescriptor[];
  enumType: { name: string; value: { name: string; number: number }[] }[];
}

/** `path` = full name of a top-level message, then nested message names. */
function message(definition: PackageDefinition, fullName: string, ...nested: string[]): MessageDescriptor {
  const entry = definition[fullName] as { type?: MessageDescriptor } | undefined;
  let descriptor = entry?.type;
  for (const name of nested) descriptor = descriptor?.nestedType.find((n) => n.name === name);
  if (!descriptor) throw new Error(`no message ${[fullName, ...nested].join('.')}`);
  return descriptor;
}

/** name -> [number, type, label] with types shortened (TYPE_STRING -> string). */
function fieldsOf(descriptor: MessageDescriptor): Record<string, [number, string, string]> {
  return Object.fromEntries(
    descriptor.field.map((f) => [
      f.name,
      [f.number, f.type.replace('TYPE_', '').toLowerCase(), f.label === 'LABEL_REPEATED' ? 'repeated' : 'single'],
    ]),
  );
}

function enumOf(descriptor: MessageDescriptor, name: string): Record<string, number> {
  const e = descriptor.enumType.find((x) => x.name === name);
  if (!e) throw new Error(`no enum ${name}`);
  return Object.fromEntries(e.value.map((v) => [v.name, v.number]));
}

describe('proto loader', () => {
  let protos: LoadedProtos;
  beforeAll(() => {
    protos = loadProtos();
  });

  it('finds the repository proto folder from the source tree', () => {
    expect(defaultProtoDir()).toBe(REPO_PROTO);
  });

  describe('defaultProtoDir layouts', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'proto-dir-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('prefers proto/ next to the bundle (dist/proto)', async () => {
      await mkdir(join(dir, 'pkg/dist/proto/csi'), { recursive: true });
      await writeFile(join(dir, 'pkg/dist/proto/csi/csi.proto'), '');
      await mkdir(join(dir, 'pkg/proto/csi'), { recursive: true });
      await writeFile(join(dir, 'pkg/proto/csi/csi.proto'), '');
      expect(defaultProtoDir(pathToFileURL(join(dir, 'pkg/dist/cli.js')).href)).toBe(join(dir, 'pkg/dist/proto'));
    });

    it('skips a folder named proto that holds no definitions (the source folder of the loader)', async () => {
      await mkdir(join(dir, 'repo/driver/src/proto'), { recursive: true });
      await mkdir(join(dir, 'repo/proto/csi'), { recursive: true });
      await writeFile(join(dir, 'repo/proto/csi/csi.proto'), '');
      const moduleUrl = pathToFileURL(join(dir, 'repo/driver/src/proto/load.ts')).href;
      expect(defaultProtoDir(moduleUrl)).toBe(join(dir, 'repo/proto'));
    });

    it.skipIf(existsSync('/proto/csi/csi.proto'))('says where it looked when nothing is found', () => {
      const moduleUrl = pathToFileURL(join(dir, 'nowhere/deep/mod.js')).href;
      expect(() => defaultProtoDir(moduleUrl)).toThrow(ProtoLoadError);
      expect(() => defaultProtoDir(moduleUrl)).toThrow(/^proto: no proto folder containing csi\/csi.proto found; looked in .*nowhere\/deep\/proto/);
    });

    it('rejects an explicit folder without the definitions', () => {
      expect(() => loadProtos(dir)).toThrow(/^proto: .* is not a proto folder/);
    });
  });

  it('exposes the services with their wire paths', () => {
    expect(Object.keys(protos.csi.Identity.service)).toEqual(['GetPluginInfo', 'GetPluginCapabilities', 'Probe']);
    expect(Object.keys(protos.csi.Node.service)).toEqual([
      'NodeStageVolume',
      'NodeUnstageVolume',
      'NodePublishVolume',
      'NodeUnpublishVolume',
      'NodeGetVolumeStats',
      'NodeExpandVolume',
      'NodeGetCapabilities',
      'NodeGetInfo',
    ]);
    expect(protos.csi.Node.service.NodePublishVolume?.path).toBe('/csi.v1.Node/NodePublishVolume');
    expect(protos.csi.Identity.service.Probe?.path).toBe('/csi.v1.Identity/Probe');
    expect(protos.csi.Controller.service.CreateVolume?.path).toBe('/csi.v1.Controller/CreateVolume');

    const delegated = protos.delegatedIdentity.DelegatedIdentity.service;
    const prefix = '/spire.api.agent.delegatedidentity.v1.DelegatedIdentity/';
    expect(Object.fromEntries(Object.entries(delegated).map(([k, m]) => [k, [m.path, m.responseStream]]))).toEqual({
      SubscribeToX509SVIDs: [`${prefix}SubscribeToX509SVIDs`, true],
      SubscribeToX509Bundles: [`${prefix}SubscribeToX509Bundles`, true],
      FetchJWTSVIDs: [`${prefix}FetchJWTSVIDs`, false],
      SubscribeToJWTBundles: [`${prefix}SubscribeToJWTBundles`, true],
    });

    const workload = protos.workload.SpiffeWorkloadAPI.service;
    expect(workload.FetchX509SVID?.path).toBe('/SpiffeWorkloadAPI/FetchX509SVID');
    expect(workload.FetchX509SVID?.responseStream).toBe(true);
    expect(workload.FetchJWTSVID?.responseStream).toBe(false);
    expect(workload.ValidateJWTSVID?.path).toBe('/SpiffeWorkloadAPI/ValidateJWTSVID');
  });

  it('has the CSI field numbers and types the driver relies on', () => {
    const d = protos.definition;
    expect(fieldsOf(message(d, 'csi.v1.GetPluginInfoResponse'))).toEqual({
      name: [1, 'string', 'single'],
      vendor_version: [2, 'string', 'single'],
      manifest: [3, 'message', 'repeated'],
    });
    expect(fieldsOf(message(d, 'csi.v1.ProbeResponse'))).toEqual({ ready: [1, 'message', 'single'] });
    expect(message(d, 'csi.v1.ProbeResponse').field[0]?.typeName).toBe('google.protobuf.BoolValue');
    expect(fieldsOf(message(d, 'csi.v1.GetPluginCapabilitiesResponse'))).toEqual({ capabilities: [1, 'message', 'repeated'] });
    expect(fieldsOf(message(d, 'csi.v1.NodeGetInfoResponse'))).toEqual({
      node_id: [1, 'string', 'single'],
      max_volumes_per_node: [2, 'int64', 'single'],
      accessible_topology: [3, 'message', 'single'],
    });
    expect(fieldsOf(message(d, 'csi.v1.NodeGetCapabilitiesResponse'))).toEqual({ capabilities: [1, 'message', 'repeated'] });
    expect(fieldsOf(message(d, 'csi.v1.NodeServiceCapability'))).toEqual({ rpc: [1, 'message', 'single'] });
    expect(fieldsOf(message(d, 'csi.v1.NodeServiceCapability', 'RPC'))).toEqual({ type: [1, 'enum', 'single'] });
    expect(enumOf(message(d, 'csi.v1.NodeServiceCapability', 'RPC'), 'Type')).toMatchObject({
      STAGE_UNSTAGE_VOLUME: 1,
      VOLUME_MOUNT_GROUP: 6,
    });
    expect(fieldsOf(message(d, 'csi.v1.NodePublishVolumeRequest'))).toEqual({
      volume_id: [1, 'string', 'single'],
      publish_context: [2, 'message', 'repeated'],
      staging_target_path: [3, 'string', 'single'],
      target_path: [4, 'string', 'single'],
      volume_capability: [5, 'message', 'single'],
      readonly: [6, 'bool', 'single'],
      secrets: [7, 'message', 'repeated'],
      volume_context: [8, 'message', 'repeated'],
    });
    expect(fieldsOf(message(d, 'csi.v1.NodeUnpublishVolumeRequest'))).toEqual({
      volume_id: [1, 'string', 'single'],
      target_path: [2, 'string', 'single'],
    });
    expect(fieldsOf(message(d, 'csi.v1.VolumeCapability'))).toEqual({
      block: [1, 'message', 'single'],
      mount: [2, 'message', 'single'],
      access_mode: [3, 'message', 'single'],
    });
    expect(fieldsOf(message(d, 'csi.v1.VolumeCapability', 'MountVolume'))).toEqual({
      fs_type: [1, 'string', 'single'],
      mount_flags: [2, 'string', 'repeated'],
      volume_mount_group: [3, 'string', 'single'],
    });
    expect(enumOf(message(d, 'csi.v1.VolumeCapability', 'AccessMode'), 'Mode')).toEqual({
      UNKNOWN: 0,
      SINGLE_NODE_WRITER: 1,
      SINGLE_NODE_READER_ONLY: 2,
      MULTI_NODE_READER_ONLY: 3,
      MULTI_NODE_SINGLE_WRITER: 4,
      MULTI_NODE_MULTI_WRITER: 5,
      SINGLE_NODE_SINGLE_WRITER: 6,
      SINGLE_NODE_MULTI_WRITER: 7,
    });
  });

  it('has the Delegated Identity and Workload API field numbers', () => {
    const d = protos.definition;
    const di = 'spire.api.agent.delegatedidentity.v1';
    expect(fieldsOf(message(d, `${di}.SubscribeToX509SVIDsRequest`))).toEqual({
      selectors: [1, 'message', 'repeated'],
      pid: [2, 'int32', 'single'],
    });
    expect(fieldsOf(message(d, `${di}.SubscribeToX509SVIDsResponse`))).toEqual({
      x509_svids: [1, 'message', 'repeated'],
      federates_with: [2, 'string', 'repeated'],
    });
    expect(fieldsOf(message(d, `${di}.X509SVIDWithKey`))).toEqual({
      x509_svid: [1, 'message', 'single'],
      x509_svid_key: [2, 'bytes', 'single'],
    });
    expect(fieldsOf(message(d, `${di}.SubscribeToX509BundlesResponse`))).toEqual({ ca_certificates: [1, 'message', 'repeated'] });
    expect(fieldsOf(message(d, `${di}.FetchJWTSVIDsRequest`))).toEqual({
      audience: [1, 'string', 'repeated'],
      selectors: [2, 'message', 'repeated'],
      pid: [3, 'int32', 'single'],
    });
    expect(fieldsOf(message(d, `${di}.SubscribeToJWTBundlesResponse`))).toEqual({ bundles: [1, 'message', 'repeated'] });
    expect(fieldsOf(message(d, 'spire.api.types.X509SVID'))).toEqual({
      cert_chain: [1, 'bytes', 'repeated'],
      id: [2, 'message', 'single'],
      expires_at: [3, 'int64', 'single'],
      hint: [4, 'string', 'single'],
    });
    expect(fieldsOf(message(d, 'spire.api.types.SPIFFEID'))).toEqual({
      trust_domain: [1, 'string', 'single'],
      path: [2, 'string', 'single'],
    });
    expect(fieldsOf(message(d, 'spire.api.types.Selector'))).toEqual({
      type: [1, 'string', 'single'],
      value: [2, 'string', 'single'],
    });
    expect(fieldsOf(message(d, 'spire.api.types.JWTSVID'))).toEqual({
      token: [1, 'string', 'single'],
      id: [2, 'message', 'single'],
      expires_at: [3, 'int64', 'single'],
      issued_at: [4, 'int64', 'single'],
      hint: [5, 'string', 'single'],
    });
    expect(fieldsOf(message(d, 'X509SVIDResponse'))).toEqual({
      svids: [1, 'message', 'repeated'],
      crl: [2, 'bytes', 'repeated'],
      federated_bundles: [3, 'message', 'repeated'],
    });
    expect(fieldsOf(message(d, 'X509SVID'))).toEqual({
      spiffe_id: [1, 'string', 'single'],
      x509_svid: [2, 'bytes', 'single'],
      x509_svid_key: [3, 'bytes', 'single'],
      bundle: [4, 'bytes', 'single'],
      hint: [5, 'string', 'single'],
    });
  });

  describe('wire objects follow the loader options', () => {
    type GrpcMethod = NonNullable<LoadedProtos['csi']['Node']['service'][string]>;
    const method = (m: GrpcMethod | undefined): GrpcMethod => {
      if (!m) throw new Error('missing method');
      return m;
    };

    it('encodes by field number and decodes snake_case with defaults and oneof markers', () => {
      const publish = method(protos.csi.Node.service.NodePublishVolume);
      const bytes = publish.requestSerialize({ volume_id: 'v', readonly: true });
      expect(bytes.toString('hex')).toBe('0a0176' + '3001'); // field 1 "v", field 6 true
      const capability = publish.requestSerialize({
        volume_capability: { mount: { volume_mount_group: '7' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      });
      expect(publish.requestDeserialize(capability)).toEqual({
        volume_id: '',
        publish_context: {},
        staging_target_path: '',
        target_path: '',
        volume_capability: {
          mount: { fs_type: '', mount_flags: [], volume_mount_group: '7' },
          access_type: 'mount',
          access_mode: { mode: 'SINGLE_NODE_WRITER' },
        },
        readonly: false,
        secrets: {},
        volume_context: {},
      });
    });

    it('keeps int64 as strings, enums as names and bytes as Buffers', () => {
      const info = method(protos.csi.Node.service.NodeGetInfo);
      const encoded = info.responseSerialize({ node_id: 'n', max_volumes_per_node: '9007199254740993' });
      expect(info.responseDeserialize(encoded)).toMatchObject({ node_id: 'n', max_volumes_per_node: '9007199254740993' });

      const caps = method(protos.csi.Node.service.NodeGetCapabilities);
      const capsBytes = caps.responseSerialize({ capabilities: [{ rpc: { type: 'VOLUME_MOUNT_GROUP' } }] });
      expect(capsBytes.toString('hex')).toBe('0a040a020806'); // capabilities{rpc{type=6}}
      expect(caps.responseDeserialize(capsBytes)).toEqual({ capabilities: [{ rpc: { type: 'VOLUME_MOUNT_GROUP' }, type: 'rpc' }] });

      const svids = method(protos.delegatedIdentity.DelegatedIdentity.service.SubscribeToX509SVIDs);
      const response = svids.responseDeserialize(
        svids.responseSerialize({ x509_svids: [{ x509_svid_key: Buffer.from([1, 2, 3]) }], federates_with: ['spiffe://b'] }),
      ) as { x509_svids: { x509_svid_key: unknown }[]; federates_with: string[] };
      expect(Buffer.isBuffer(response.x509_svids[0]?.x509_svid_key)).toBe(true);
      expect(response.x509_svids[0]?.x509_svid_key).toEqual(Buffer.from([1, 2, 3]));
      expect(response.federates_with).toEqual(['spiffe://b']);
    });
  });
});

describe('serialized requests', () => {
  it('get a memory block of their own, so a long-lived stream does not pin a pooled slab', () => {
    const { DelegatedIdentity } = loadProtos().delegatedIdentity;
    const method = DelegatedIdentity.service.SubscribeToX509SVIDs!;
    const bytes = method.requestSerialize({ selectors: [{ type: 'k8s', value: 'ns:default' }] });
    expect(bytes.length).toBeGreaterThan(0);
    expect(bytes.buffer.byteLength).toBe(bytes.length);
  });
});
