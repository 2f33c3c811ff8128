import type { X509Material } from '@spire-csi/sdk/source';
import type { Authorizer } from '@spire-csi/sdk/authorize';
import { authorizeId, authorizeMemberOf } from '@spire-csi/sdk/authorize';
import type { X509Svid } from '@spire-csi/sdk/x509';

/**
 * The driver's own X.509-SVID and bundles (the Workload API source in production): what it presents
 * to the broker endpoint and verifies the endpoint with. `current()` throws until the first SVID.
 */
export interface OwnIdentity {
  current(): X509Material;
  on(event: 'update', listener: (material: X509Material) => void): unknown;
  off(event: 'update', listener: (material: X509Material) => void): unknown;
  close(): unknown;
}

/** The driver's current SVID, or undefined before the Workload API gave it one. */
export function ownSvidOf(identity: OwnIdentity): X509Svid | undefined {
  try {
    return identity.current().svid;
  } catch {
    return undefined;
  }
}

/**
 * Who the broker endpoint may be: exactly `--broker-id`, else any SPIFFE ID of the driver's own
 * trust domain (SPIRE agents' IDs are per node and not known in advance). The trust domain is the
 * current SVID's, read at each handshake, so the driver's first SVID need not exist yet.
 */
export function brokerServerAuthorizer(identity: OwnIdentity, brokerId: string | undefined): Authorizer {
  if (brokerId !== undefined) return authorizeId(brokerId);
  return (id, chain) => {
    const own = ownSvidOf(identity);
    if (own === undefined) throw new Error("authorize: the driver has no SVID of its own yet, so its trust domain is unknown");
    authorizeMemberOf(own.id.trustDomain)(id, chain);
  };
}
