import { Metadata, status } from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBrokerProtos } from '../../driver/src/proto/load.js';
import { brokerErrorFromStatus, brokerStreamEndedError, connectionFailureOf, type BrokerErrorContext } from '../../driver/src/identity/broker/broker-errors.js';
import { errorInfoFromMetadata, errorInfoFromStatusBytes, statusDetailsWithErrorInfo, STATUS_DETAILS_KEY } from '../../driver/src/identity/broker/error-details.js';
import {
  describePodReference,
  KUBERNETES_OBJECT_REFERENCE_TYPE_URL,
  kubernetesObjectReferenceFromWire,
  podReferenceToWire,
} from '../../driver/src/identity/broker/reference.js';
import {
  jwtBundlesFromBrokerWire,
  jwtSvidsFromBrokerWire,
  x509UpdateFromBrokerWire,
  type WireBrokerX509Svid,
  type WireSubscribeToX509SvidResponse,
} from '../../driver/src/identity/broker/wire.js';
import { WireError } from '../../driver/src/identity/wire-checks.js';
import { TestJwtIssuer } from './jwt-fixtures.js';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';

const POD = { namespace: 'shop', name: 'checkout-7c9f', uid: 'a1b2c3d4-e5f6-7890-abcd-ef1234567890', serviceAccount: 'checkout' };
const referenceType = loadBrokerProtos().KubernetesObjectReference;

/** Protobuf wire format by hand: a length-delimited field. */
function field(number: number, bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(number << 3) | 2, bytes.length]), bytes]);
}

describe('KubernetesObjectReference in the request (spec 3.1.3)', () => {
  it('packs pods/core, namespace, name and uid, byte for byte as the proto defines them', () => {
    const wire = podReferenceToWire(POD, referenceType);
    expect(wire.reference?.type_url).toBe('type.googleapis.com/spiffe.broker.KubernetesObjectReference');
    expect(KUBERNETES_OBJECT_REFERENCE_TYPE_URL).toBe(wire.reference?.type_url);
    const expected = Buffer.concat([
      field(1, Buffer.concat([field(1, Buffer.from('pods')), field(2, Buffer.from('core'))])),
      field(2, Buffer.concat([field(1, Buffer.from(POD.namespace)), field(2, Buffer.from(POD.name))])),
      field(3, Buffer.from(POD.uid)),
    ]);
    expect(wire.reference?.value.equals(expected)).toBe(true);
  });

  it('reads back what it packed, and nothing of another type', () => {
    const wire = podReferenceToWire(POD, referenceType);
    expect(kubernetesObjectReferenceFromWire(wire, referenceType)).toEqual({
      type: { plural: 'pods', group: 'core' },
      key: { namespace: POD.namespace, name: POD.name },
      uid: POD.uid,
    });
    const other = { reference: { type_url: 'type.googleapis.com/spiffe.broker.WorkloadPIDReference', value: Buffer.from([8, 1]) } };
    expect(kubernetesObjectReferenceFromWire(other, referenceType)).toBeUndefined();
    expect(kubernetesObjectReferenceFromWire({ reference: null }, referenceType)).toBeUndefined();
  });

  it('describes the pod as the error messages name it', () => {
    expect(describePodReference(POD)).toBe(`pod reference shop/checkout-7c9f (uid ${POD.uid})`);
  });
});

describe('SubscribeToX509SVID responses', () => {
  let ca: TestCa;
  let partner: TestCa;
  let web: MintedSvid;
  let other: TestCa;
  let foreign: MintedSvid;

  beforeAll(async () => {
    ca = await TestCa.create('example.org');
    partner = await TestCa.create('partner.org');
    other = await TestCa.create('other.org');
    web = await ca.mint('spiffe://example.org/ns/shop/sa/checkout');
    foreign = await other.mint('spiffe://other.org/w');
  });

  const svid = (minted: MintedSvid, bundle: Buffer, overrides: Partial<WireBrokerX509Svid> = {}): WireBrokerX509Svid => ({
    spiffe_id: minted.cert.subjectAltName!.replace(/^URI:/, ''),
    x509_svid: Buffer.concat(minted.chainDer),
    x509_svid_key: minted.keyDer,
    bundle,
    hint: '',
    ...overrides,
  });
  const message = (svids: WireBrokerX509Svid[], federated: Record<string, Buffer> = {}): WireSubscribeToX509SvidResponse => ({
    svids,
    crl: [],
    federated_bundles: federated,
  });

  it("carries the pod's own bundles: each SVID's trust domain and the federated ones", () => {
    const update = x509UpdateFromBrokerWire(
      message([svid(web, ca.certDer, { hint: 'internal' }), svid(foreign, other.certDer)], { 'spiffe://partner.org': partner.certDer }),
    );
    expect(update.svids.map((s) => [s.spiffeId, s.hint])).toEqual([
      ['spiffe://example.org/ns/shop/sa/checkout', 'internal'],
      ['spiffe://other.org/w', ''],
    ]);
    expect(update.svids[0]!.chainDer).toHaveLength(1);
    expect(update.svids[0]!.keyDer.equals(web.keyDer)).toBe(true);
    expect(update.federatesWith).toEqual(['partner.org']);
    expect([...update.bundles!.keys()].sort()).toEqual(['example.org', 'other.org', 'partner.org']);
    expect(update.bundles!.get('example.org')!.equals(ca.certDer)).toBe(true);
    expect(update.bundles!.get('partner.org')!.equals(partner.certDer)).toBe(true);
  });

  it('takes the SVID\'s own bundle over a federated entry for its own trust domain', () => {
    const update = x509UpdateFromBrokerWire(message([svid(web, ca.certDer)], { 'spiffe://example.org': partner.certDer }));
    expect(update.federatesWith).toEqual([]);
    expect(update.bundles!.get('example.org')!.equals(ca.certDer)).toBe(true);
  });

  it('keeps zero SVIDs (no registration entry yet) as an update, not an error', () => {
    expect(x509UpdateFromBrokerWire(message([]))).toEqual({ svids: [], federatesWith: [], bundles: new Map() });
  });

  it.each([
    ['spiffe_id', { spiffe_id: '' }, /svids\[0\]\.spiffe_id is empty, but the Broker API requires it; the message is discarded/],
    ['x509_svid', { x509_svid: Buffer.alloc(0) }, /svids\[0\]\.x509_svid is empty/],
    ['x509_svid_key', { x509_svid_key: Buffer.alloc(0) }, /svids\[0\]\.x509_svid_key is empty/],
    ['bundle', { bundle: Buffer.alloc(0) }, /svids\[0\]\.bundle is empty/],
  ])('discards a message whose mandatory %s has its default value (spec 4.6)', (_name, overrides, error) => {
    expect(() => x509UpdateFromBrokerWire(message([svid(web, ca.certDer, overrides)]))).toThrow(error);
  });

  it.each([
    ['a SPIFFE ID that is not one', { spiffe_id: 'https://example.org/x' }, /svids\[0\]\.spiffe_id is not a SPIFFE ID/],
    ['a path that would merge into the trust domain', { spiffe_id: 'spiffe://example.org/../x' }, /svids\[0\]\.spiffe_id is not a SPIFFE ID/],
    ['a chain that is not DER', { x509_svid: Buffer.from([0x30, 0x05, 0x00]) }, /svids\[0\]\.x509_svid is not DER/],
    ['a bundle that is not DER', { bundle: Buffer.from('not der') }, /svids\[0\]\.bundle is not DER/],
  ])('rejects %s', (_name, overrides, error) => {
    expect(() => x509UpdateFromBrokerWire(message([svid(web, ca.certDer, overrides)]))).toThrow(error);
  });

  it('rejects federated bundles with keys that are not trust domains, or no certificates, never quoting key material', () => {
    expect(() => x509UpdateFromBrokerWire(message([svid(web, ca.certDer)], { 'spiffe://partner.org/path': partner.certDer }))).toThrow(
      /federated_bundles key "spiffe:\/\/partner\.org\/path" is not a trust domain/,
    );
    expect(() => x509UpdateFromBrokerWire(message([svid(web, ca.certDer)], { 'spiffe://partner.org': Buffer.alloc(0) }))).toThrow(
      /federated_bundles\["spiffe:\/\/partner\.org"\] is empty/,
    );
    let thrown: unknown;
    try {
      x509UpdateFromBrokerWire(message([svid(web, ca.certDer, { spiffe_id: '' })]));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(WireError);
    expect((thrown as Error).message).not.toContain(web.keyDer.toString('base64').slice(0, 24));
  });
});

describe('FetchJWTSVID and SubscribeToJWTBundles responses', () => {
  let issuer: TestJwtIssuer;
  beforeAll(async () => {
    issuer = await TestJwtIssuer.create('example.org');
  });

  it('reads exp and iat from the token, since the Broker API does not send them', async () => {
    const issuedAt = new Date('2030-01-01T00:00:00Z');
    const minted = await issuer.mint('spiffe://example.org/w', { audiences: ['db'], issuedAt, expiresAt: new Date('2030-01-01T00:05:00Z') });
    const [svid] = jwtSvidsFromBrokerWire({ svids: [{ spiffe_id: 'spiffe://example.org/w', svid: minted.token, hint: 'external' }] });
    expect(svid).toEqual({
      token: minted.token,
      spiffeId: 'spiffe://example.org/w',
      expiresAt: String(Date.parse('2030-01-01T00:05:00Z') / 1000),
      issuedAt: String(issuedAt.getTime() / 1000),
      hint: 'external',
    });
  });

  it('refuses entries without their mandatory fields or with a token that is not a JWT, without quoting it', () => {
    expect(() => jwtSvidsFromBrokerWire({ svids: [{ spiffe_id: '', svid: 'a.b.c', hint: '' }] })).toThrow(/svids\[0\]\.spiffe_id is empty/);
    expect(() => jwtSvidsFromBrokerWire({ svids: [{ spiffe_id: 'spiffe://example.org/w', svid: '', hint: '' }] })).toThrow(/svids\[0\]\.svid is empty/);
    const secret = 'eyJzZWNyZXQiOiJ0b2tlbiJ9.garbage-that-is-secret.sig';
    let thrown: unknown;
    try {
      jwtSvidsFromBrokerWire({ svids: [{ spiffe_id: 'spiffe://example.org/w', svid: secret, hint: '' }] });
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error).message).toMatch(/svids\[0\]\.svid is not a JWT/);
    expect((thrown as Error).message).not.toContain('garbage-that-is-secret');
  });

  it('takes JWT bundles keyed by trust domain ID, and rejects a message with a document that is not a JWKS', () => {
    const bundles = jwtBundlesFromBrokerWire({ bundles: { 'spiffe://example.org': issuer.jwks() } });
    expect([...bundles.keys()]).toEqual(['example.org']);
    expect(() => jwtBundlesFromBrokerWire({ bundles: { 'spiffe://example.org': issuer.jwks(), 'spiffe://b.org': Buffer.from('{}') } })).toThrow(
      /bundles for b\.org: jwks: has no "keys" array/,
    );
  });
});

describe('google.rpc.ErrorInfo in grpc-status-details-bin', () => {
  const info = { reason: 'WORKLOAD_NOT_FOUND', domain: 'spiffe.io', metadata: { name: 'web' } };

  it('is read from the status details when present', () => {
    const metadata = new Metadata();
    metadata.set(STATUS_DETAILS_KEY, statusDetailsWithErrorInfo(status.NOT_FOUND, 'pod not found', info));
    expect(errorInfoFromMetadata(metadata)).toEqual(info);
  });

  it('is undefined without the trailer, and garbage in it is tolerated', () => {
    expect(errorInfoFromMetadata(new Metadata())).toBeUndefined();
    expect(errorInfoFromMetadata(undefined)).toBeUndefined();
    expect(errorInfoFromStatusBytes(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]))).toBeUndefined();
    expect(errorInfoFromStatusBytes(Buffer.from('certainly not a protobuf message'))).toBeUndefined();
    const metadata = new Metadata();
    metadata.set(STATUS_DETAILS_KEY, Buffer.from([0x1a, 0x50, 0x01]));
    expect(errorInfoFromMetadata(metadata)).toBeUndefined();
  });
});

describe('Broker API answers as operator messages', () => {
  const ctx: BrokerErrorContext = {
    rpc: 'SubscribeToX509SVID',
    pod: describePodReference(POD),
    endpoint: 'unix:///run/spire/broker.sock',
    driverId: 'spiffe://example.org/ns/spire-csi/sa/spire-csi-driver',
    brokerId: undefined,
  };
  const withInfo = (code: status, reason: string): Metadata => {
    const metadata = new Metadata();
    metadata.set(STATUS_DETAILS_KEY, statusDetailsWithErrorInfo(code, 'x', { reason, domain: 'spiffe.io', metadata: {} }));
    return metadata;
  };
  const prefix = `broker: SubscribeToX509SVID for pod reference shop/checkout-7c9f (uid ${POD.uid})`;

  it('InvalidArgument fails for good with what the agent said', () => {
    const error = brokerErrorFromStatus(ctx, { code: status.INVALID_ARGUMENT, details: 'workload reference must be provided' });
    expect(error).toMatchObject({ code: status.INVALID_ARGUMENT, kind: 'refused' });
    expect(error.message).toBe(`${prefix}: the SPIRE agent rejected the request as invalid (agent answered INVALID_ARGUMENT: workload reference must be provided)`);
    const described = brokerErrorFromStatus(ctx, { code: status.INVALID_ARGUMENT, details: 'bad uid', metadata: withInfo(status.INVALID_ARGUMENT, 'WORKLOAD_REFERENCE_INVALID') });
    expect(described.message).toContain('(agent answered INVALID_ARGUMENT WORKLOAD_REFERENCE_INVALID: bad uid)');
  });

  it('PermissionDenied for the driver itself fails for good, naming its SPIFFE ID and the allowlist setting', () => {
    const error = brokerErrorFromStatus(ctx, {
      code: status.PERMISSION_DENIED,
      details: 'broker "spiffe://example.org/ns/spire-csi/sa/spire-csi-driver" is not allowed to use reference type "type.googleapis.com/spiffe.broker.KubernetesObjectReference"',
    });
    expect(error.kind).toBe('refused');
    expect(error.message).toContain('the SPIRE agent does not allow this driver (SPIFFE ID spiffe://example.org/ns/spire-csi/sa/spire-csi-driver) to ask for pods');
    expect(error.message).toContain('is not allowed to use reference type');
    expect(error.message).toContain('experimental.broker.brokers');
    expect(error.message).toContain('allowed_reference_types containing type.googleapis.com/spiffe.broker.KubernetesObjectReference');
  });

  it("PermissionDenied from SPIRE's k8s attestor names the setting the agent's words point to", () => {
    const rbac = brokerErrorFromStatus(ctx, {
      code: status.PERMISSION_DENIED,
      details: 'Kubernetes authorizer does not allow the broker to use impersonate-via-spire for the referenced object',
    });
    expect(rbac.kind).toBe('refused');
    expect(rbac.message).toContain('use the verb impersonate-via-spire on pods in Kubernetes RBAC');
    expect(rbac.message).not.toContain('allowed_reference_types');
    const unlisted = brokerErrorFromStatus(ctx, {
      code: status.PERMISSION_DENIED,
      details: 'broker "spiffe://example.org/ns/spire-csi/sa/spire-csi-driver" is not configured',
    });
    expect(unlisted.kind).toBe('refused');
    expect(unlisted.message).toContain("to the brokers of the SPIRE agent's k8s workload attestor");
    expect(unlisted.message).not.toContain('allowed_reference_types');
  });

  it('PermissionDenied WORKLOAD_NOT_ENTITLED, or SPIRE\'s "no identity issued", means no registration entry matches', () => {
    const entitled = brokerErrorFromStatus(ctx, { code: status.PERMISSION_DENIED, details: 'nope', metadata: withInfo(status.PERMISSION_DENIED, 'WORKLOAD_NOT_ENTITLED') });
    expect(entitled.kind).toBe('not-entitled');
    expect(entitled.message).toBe(`${prefix}: no registration entry matches this pod (agent answered PERMISSION_DENIED WORKLOAD_NOT_ENTITLED: nope)`);
    const spire = brokerErrorFromStatus({ ...ctx, rpc: 'FetchJWTSVID' }, { code: status.PERMISSION_DENIED, details: 'no identity issued' });
    expect(spire.kind).toBe('not-entitled');
    // With ErrorInfo present, its reason decides: another reason is the caller's own denial.
    const other = brokerErrorFromStatus(ctx, { code: status.PERMISSION_DENIED, details: 'no identity issued', metadata: withInfo(status.PERMISSION_DENIED, 'CALLER_DENIED') });
    expect(other.kind).toBe('refused');
  });

  it('NotFound and Unauthenticated are retried, and say which', () => {
    const bare = brokerErrorFromStatus(ctx, { code: status.NOT_FOUND, details: 'pod not found' });
    expect(bare.kind).toBe('other');
    expect(bare.message).toBe(
      `${prefix}: the SPIRE agent does not find this pod (agent answered NOT_FOUND: pod not found); it sees pods on its own node only, ` +
        'and a pod that has just started may not be visible to it yet',
    );
    const rich = brokerErrorFromStatus(ctx, { code: status.NOT_FOUND, details: 'pod not found', metadata: withInfo(status.NOT_FOUND, 'WORKLOAD_NOT_FOUND') });
    expect(rich.message).toContain('(agent answered NOT_FOUND WORKLOAD_NOT_FOUND: pod not found)');
    const unauthenticated = brokerErrorFromStatus(ctx, { code: status.UNAUTHENTICATED, details: 'workload attestation failed: boom' });
    expect(unauthenticated.kind).toBe('other');
    expect(unauthenticated.message).toContain('the SPIRE agent could not attest this pod (agent answered UNAUTHENTICATED: workload attestation failed: boom)');
    expect(unauthenticated.message).toContain('impersonate-via-spire');
  });

  it('tells a refused handshake, a refused server certificate and nothing listening apart', () => {
    const refused = brokerErrorFromStatus(ctx, {
      code: status.UNAVAILABLE,
      details: 'No connection established. Last error: Error: Client network socket disconnected before secure TLS connection was established. Resolution note: ',
    });
    expect(refused.kind).toBe('unavailable');
    expect(refused.message).toContain(
      `the broker endpoint unix:///run/spire/broker.sock refused the TLS handshake with the driver's SPIFFE ID ${ctx.driverId}; ` +
        `add ${ctx.driverId} to the SPIRE agent's experimental.broker.brokers allowlist`,
    );
    const alert = 'No connection established. Last error: Error: C0:error:0A000412:SSL routines:ssl3_read_bytes:ssl/tls alert bad certificate';
    expect(connectionFailureOf(alert)).toBe('handshake-refused');
    const wrongServer = brokerErrorFromStatus(
      { ...ctx, brokerId: 'spiffe://example.org/spire/agent/node-1' },
      { code: status.UNAVAILABLE, details: 'No connection established. Last error: Error: authorize: peer spiffe://example.org/evil is not spiffe://example.org/spire/agent/node-1' },
    );
    expect(wrongServer.message).toContain('the driver did not accept the certificate of the broker endpoint unix:///run/spire/broker.sock');
    expect(wrongServer.message).toContain('--broker-id spiffe://example.org/spire/agent/node-1');
    const down = brokerErrorFromStatus(ctx, { code: status.UNAVAILABLE, details: 'No connection established. Last error: Error: connect ENOENT /run/spire/broker.sock' });
    expect(down.message).toContain('the broker endpoint unix:///run/spire/broker.sock is unavailable; is the SPIRE agent running with its experimental.broker endpoint there?');
    expect(connectionFailureOf('Connection dropped')).toBeUndefined();
  });

  it('a stream the agent ends is a pod that may be gone, and the files stay', () => {
    const ended = brokerStreamEndedError(ctx);
    expect(ended.message).toBe(
      `${prefix}: the SPIRE agent ended the stream (the pod may have been deleted); the files stay until kubelet unpublishes the volume; subscribing again`,
    );
  });
});
