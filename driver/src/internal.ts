/**
 * UNSTABLE internal surface for the development tools (@spire-csi/dev: the dev agent and the demo)
 * and the repository's tests. It is not the driver's API: anything here may change or go away in
 * any release. The dev tools import driver code only through this module, so the driver's folder
 * layout can change without touching them.
 */
export { ConfigError, formatHelp, parseOptions, type OptionSpec } from './config/options.js';
export { DurationError, formatDuration, parseDuration } from './config/duration.js';
export type { BrokerSettings, DriverConfig, IdentityApi, LogLevel } from './config/driver-config.js';
export { createLogger } from './logging.js';
export { startDriver } from './main.js';
export { loadProtos } from './proto/load.js';
export { formatSelector, parseSelector, type Selector } from './identity/delegated/selectors.js';
export type {
  WireFetchJwtSvidsRequest,
  WireFetchJwtSvidsResponse,
  WireJwtSvid,
  WireSubscribeToJwtBundlesResponse,
  WireSubscribeToX509BundlesResponse,
  WireSubscribeToX509SvidsRequest,
  WireSubscribeToX509SvidsResponse,
} from './identity/delegated/wire.js';
export { DEFAULT_TMPFS_SIZE_BYTES, LinuxMounter, type Mounter, type TmpfsOptions } from './mount/mounter.js';
export { parseMountInfo } from './mount/mountinfo.js';
export { BROKER_HEADER } from './identity/broker/broker-client.js';
export {
  KUBERNETES_OBJECT_REFERENCE_TYPE_URL,
  describePodReference,
  kubernetesObjectReferenceFromWire,
  podReferenceToWire,
  type KubernetesObjectReferenceFields,
  type WireWorkloadReference,
} from './identity/broker/reference.js';
export { errorInfoFromMetadata, statusDetailsWithErrorInfo, STATUS_DETAILS_KEY, type ErrorInfo } from './identity/broker/error-details.js';
export type {
  WireBrokerJwtSvid,
  WireBrokerX509Svid,
  WireFetchJwtSvidRequest,
  WireFetchJwtSvidResponse,
  WireSubscribeToJwtBundlesRequest,
  WireSubscribeToJwtBundlesResponse as WireBrokerJwtBundlesResponse,
  WireSubscribeToX509SvidRequest,
  WireSubscribeToX509SvidResponse,
} from './identity/broker/wire.js';
