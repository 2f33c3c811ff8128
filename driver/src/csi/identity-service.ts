import type {
  GetPluginCapabilitiesResponse,
  GetPluginInfoResponse,
  ProbeResponse,
} from '../proto/csi-messages.js';
import { DRIVER_VERSION } from './driver-version.js';

export const DEFAULT_PLUGIN_NAME = 'csi.spire.io';

export interface IdentityServiceOptions {
  /** CSI driver name; must match the CSIDriver object. Default `csi.spire.io`. */
  readonly name?: string;
  /** Default: the driver package version. */
  readonly vendorVersion?: string;
  /** Readiness reported by Probe; an exception becomes a gRPC error (unhealthy, per the spec). */
  readonly isReady: () => boolean | Promise<boolean>;
}

/** The csi.v1.Identity RPCs, transport-free (server.ts adapts them to gRPC). */
export interface CsiIdentity {
  getPluginInfo(): Promise<GetPluginInfoResponse>;
  getPluginCapabilities(): Promise<GetPluginCapabilitiesResponse>;
  probe(): Promise<ProbeResponse>;
}

export class IdentityService implements CsiIdentity {
  readonly name: string;
  readonly vendorVersion: string;
  readonly #isReady: () => boolean | Promise<boolean>;

  constructor(options: IdentityServiceOptions) {
    this.name = options.name ?? DEFAULT_PLUGIN_NAME;
    this.vendorVersion = options.vendorVersion ?? DRIVER_VERSION;
    this.#isReady = options.isReady;
  }

  async getPluginInfo(): Promise<GetPluginInfoResponse> {
    return { name: this.name, vendor_version: this.vendorVersion, manifest: {} };
  }

  /**
   * None: a node-only driver has no controller service, and claiming
   * VOLUME_ACCESSIBILITY_CONSTRAINTS would require topology it does not have.
   */
  async getPluginCapabilities(): Promise<GetPluginCapabilitiesResponse> {
    return { capabilities: [] };
  }

  async probe(): Promise<ProbeResponse> {
    return { ready: { value: await this.#isReady() } };
  }
}
