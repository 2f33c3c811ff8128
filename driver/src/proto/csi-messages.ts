/**
 * The csi.v1 messages the driver reads or writes, as plain objects in the shape the loader
 * produces (PROTO_LOADER_OPTIONS): snake_case names, enums by name, int64 as strings, unset
 * messages null, a oneof's set member named by its virtual property. Incoming fields are typed
 * optional because a test or a non-conforming client may omit them; validation copes with both.
 */

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface MountVolume {
  fs_type?: string;
  /** May carry sensitive data (CSI spec): never logged. */
  mount_flags?: string[];
  volume_mount_group?: string;
}

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: MountVolume | null;
  /** Oneof marker set by the loader. */
  access_type?: 'block' | 'mount';
  /** A number when the sender used a value this proto does not know. */
  access_mode?: { mode?: AccessModeName | number } | null;
}

export interface NodePublishVolumeRequest {
  volume_id?: string;
  publish_context?: Record<string, string>;
  staging_target_path?: string;
  target_path?: string;
  volume_capability?: VolumeCapability | null;
  readonly?: boolean;
  /** csi_secret: never logged, never stored. */
  secrets?: Record<string, string>;
  /** May include `csi.storage.k8s.io/serviceAccount.tokens`: never logged whole. */
  volume_context?: Record<string, string>;
}

export interface NodeUnpublishVolumeRequest {
  volume_id?: string;
  target_path?: string;
}

export type NodePublishVolumeResponse = Record<string, never>;
export type NodeUnpublishVolumeResponse = Record<string, never>;

export interface NodeGetInfoResponse {
  node_id: string;
  /** int64 as a decimal string; '0' lets the CO decide. */
  max_volumes_per_node?: string;
}

export type NodeServiceCapabilityType =
  | 'STAGE_UNSTAGE_VOLUME'
  | 'GET_VOLUME_STATS'
  | 'EXPAND_VOLUME'
  | 'VOLUME_CONDITION'
  | 'SINGLE_NODE_MULTI_WRITER'
  | 'VOLUME_MOUNT_GROUP';

export interface NodeGetCapabilitiesResponse {
  capabilities: { rpc: { type: NodeServiceCapabilityType } }[];
}

export interface GetPluginInfoResponse {
  name: string;
  vendor_version: string;
  manifest?: Record<string, string>;
}

export type PluginCapabilityServiceType =
  | 'CONTROLLER_SERVICE'
  | 'VOLUME_ACCESSIBILITY_CONSTRAINTS'
  | 'GROUP_CONTROLLER_SERVICE'
  | 'SNAPSHOT_METADATA_SERVICE';

export interface GetPluginCapabilitiesResponse {
  capabilities: { service: { type: PluginCapabilityServiceType } }[];
}

export interface ProbeResponse {
  /** google.protobuf.BoolValue */
  ready: { value: boolean };
}
