import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { agentErrorFromStatus, streamEndedError } from '../../driver/src/identity/delegated/agent-errors.js';
import { AgentError } from '../../driver/src/identity/identity-backend.js';
import { bundleUpdateFromWire, jwtBundleUpdateFromWire, jwtSvidsFromWire, svidUpdateFromWire, trustDomainOfBundleKey, WireError } from '../../driver/src/identity/delegated/wire.js';
import { TestCa } from '../helpers/test-ca.js';

describe('wire conversion', () => {
  it('strips spiffe:// from bundle keys and accepts bare names', () => {
    const update = bundleUpdateFromWire({
      ca_certificates: { 'spiffe://example.org': Buffer.from([1]), 'other.org': Buffer.from([2]) },
    });
    expect([...update.keys()]).toEqual(['example.org', 'other.org']);
    expect(trustDomainOfBundleKey('spiffe://a.org')).toBe('a.org');
    expect(() => bundleUpdateFromWire({ ca_certificates: { 'spiffe://a.org/path': Buffer.alloc(0) } })).toThrow(WireError);
  });

  it('converts SVIDs, splitting a chain sent as one concatenated element', async () => {
    const root = await TestCa.create('example.org');
    const intermediate = await root.intermediate();
    const minted = await intermediate.mint('spiffe://example.org/web');
    expect(minted.chainDer).toHaveLength(2);
    const update = svidUpdateFromWire({
      x509_svids: [
        {
          x509_svid: {
            cert_chain: [Buffer.concat(minted.chainDer)],
            id: { trust_domain: 'example.org', path: '/web' },
            expires_at: '1893456000',
            hint: 'h',
          },
          x509_svid_key: minted.keyDer,
        },
      ],
      federates_with: ['spiffe://other.org'],
    });
    expect(update.federatesWith).toEqual(['other.org']);
    const [svid] = update.svids;
    expect(svid).toMatchObject({ spiffeId: 'spiffe://example.org/web', hint: 'h' });
    expect(svid!.chainDer.map((c) => c.toString('hex'))).toEqual(minted.chainDer.map((c) => c.toString('hex')));
    expect(svid!.keyDer.equals(minted.keyDer)).toBe(true);
  });

  it('accepts an empty path (the trust domain itself) and refuses a JWT-SVID path without a leading slash', () => {
    const id = { trust_domain: 'example.org', path: '' };
    expect(jwtSvidsFromWire({ svids: [{ token: 't', id, expires_at: '1', issued_at: '0', hint: '' }] })[0]!.spiffeId).toBe(
      'spiffe://example.org',
    );
    const bad = { token: 't', id: { trust_domain: 'example.org', path: 'x' }, expires_at: '1', issued_at: '0', hint: '' };
    expect(() => jwtSvidsFromWire({ svids: [bad] })).toThrow(/malformed SPIFFE ID in svids\[0\]\.id: path "x" must be empty or start with/);
  });

  it('turns federates_with into trust domain names once, reporting entries that are not trust domain IDs', () => {
    const invalid: string[][] = [];
    const update = svidUpdateFromWire(
      { x509_svids: [], federates_with: ['spiffe://b.org', 'spiffe://a.org', 'spiffe://b.org', 'spiffe://a.org/path', 'not an id'] },
      (entries) => invalid.push([...entries]),
    );
    expect(update.federatesWith).toEqual(['a.org', 'b.org']);
    expect(invalid).toEqual([['spiffe://a.org/path', 'not an id']]);
  });

  it('refuses a JWT bundle message in which any entry is not a JWKS document', () => {
    const good = Buffer.from(JSON.stringify({ keys: [] }));
    expect([...jwtBundleUpdateFromWire({ bundles: { 'spiffe://a.org': good } }).keys()]).toEqual(['a.org']);
    expect(() => jwtBundleUpdateFromWire({ bundles: { 'spiffe://a.org': good, 'spiffe://b.org': Buffer.from('nope') } })).toThrow(
      /JWT bundle for b.org: jwks: not valid JSON/,
    );
  });

  it('passes an empty set through', () => {
    expect(svidUpdateFromWire({ x509_svids: [], federates_with: [] })).toEqual({ svids: [], federatesWith: [] });
  });

  const base = {
    x509_svid: { cert_chain: [Buffer.from([0x30, 0x00])], id: { trust_domain: 'example.org', path: '/a' }, expires_at: '1', hint: '' },
    x509_svid_key: Buffer.from([1]),
  };
  it.each([
    ['no-svid', { ...base, x509_svid: null }, /x509_svids\[0\] has no x509_svid/],
    ['no-id', { ...base, x509_svid: { ...base.x509_svid, id: null } }, /no SPIFFE ID/],
    ['empty-chain', { ...base, x509_svid: { ...base.x509_svid, cert_chain: [] } }, /empty cert_chain/],
    ['bad-der', { ...base, x509_svid: { ...base.x509_svid, cert_chain: [Buffer.from([0x30, 0x05, 0x00])] } }, /cert_chain is not DER/],
    ['no-key', { ...base, x509_svid_key: Buffer.alloc(0) }, /no private key/],
    [
      'path-without-slash',
      { ...base, x509_svid: { ...base.x509_svid, id: { trust_domain: 'example.org', path: 'evil.org/a' } } },
      /malformed SPIFFE ID in x509_svids\[0\]\.id: path "evil\.org\/a" must be empty or start with "\/"/,
    ],
  ])('rejects %s without echoing key bytes', (_name, item, message) => {
    expect(() => svidUpdateFromWire({ x509_svids: [item], federates_with: [] })).toThrow(message);
  });
});

describe('agent errors', () => {
  it('explains PermissionDenied with the authorized_delegates fix', () => {
    const error = agentErrorFromStatus('SubscribeToX509SVIDs', '/run/spire/admin.sock', {
      code: status.PERMISSION_DENIED,
      details: 'caller not configured as an authorized delegate',
    });
    expect(error).toBeInstanceOf(AgentError);
    expect(error.kind).toBe('permission-denied');
    expect(error.message).toMatch(/^spire: SubscribeToX509SVIDs: this driver is not an authorized delegate/);
    expect(error.message).toMatch(/authorized_delegates/);
    expect(error.message).toMatch(/agent said: caller not configured/);
  });

  it('names the socket when the agent is unavailable', () => {
    const error = agentErrorFromStatus('SubscribeToX509Bundles', '/run/spire/admin.sock', { code: status.UNAVAILABLE, details: 'ENOENT' });
    expect(error.kind).toBe('unavailable');
    expect(error.message).toContain('/run/spire/admin.sock');
    expect(streamEndedError('X', '/s.sock')).toMatchObject({ kind: 'unavailable', code: status.UNAVAILABLE });
  });

  it('classifies anything else as other, with the status name', () => {
    const error = agentErrorFromStatus('X', '/s.sock', { code: status.INVALID_ARGUMENT, details: 'bad selectors' });
    expect(error.kind).toBe('other');
    expect(error.message).toContain('INVALID_ARGUMENT');
  });
});
