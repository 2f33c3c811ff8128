import { describe, expect, it } from 'vitest';
import * as sdk from '@spire-csi/sdk';
import * as clock from '@spire-csi/sdk/clock';
import * as jwt from '@spire-csi/sdk/jwt';
import * as layout from '@spire-csi/sdk/layout';
import * as source from '@spire-csi/sdk/source';
import {
  LayoutError,
  audienceOfJwtSvidFileName,
  decodeAudience,
  encodeAudience,
  jwtSvidFileName,
} from '../../sdk/src/layout/layout.js';

describe('jwtSvidFileName', () => {
  it.each([
    ['api', 'jwt-svid.api.token'],
    ['A.b_c-9', 'jwt-svid.A.b_c-9.token'],
    ['https://api.example.com/v1', 'jwt-svid.https%3A%2F%2Fapi.example.com%2Fv1.token'],
    ['bücher ☃', 'jwt-svid.b%C3%BCcher%20%E2%98%83.token'],
    ['🔑', 'jwt-svid.%F0%9F%94%91.token'],
    ['100%', 'jwt-svid.100%25.token'],
    ['a/../b', 'jwt-svid.a%2F..%2Fb.token'],
    ['x\\y?z#w', 'jwt-svid.x%5Cy%3Fz%23w.token'],
    ['token', 'jwt-svid.token.token'],
  ])('names the file for %j %s', (audience, name) => {
    expect(jwtSvidFileName(audience)).toBe(name);
    expect(audienceOfJwtSvidFileName(name)).toBe(audience);
  });

  it('always gives one plain file name, and the inverse gives the audience back', () => {
    const audiences = ['api', 'spiffe://example.org/ns/default/sa/db', ' ', '.', '..', 'a\u0000b', 'ÅÄÖ', '日本語', 'x'.repeat(200), '%41'];
    for (const audience of audiences) {
      const name = jwtSvidFileName(audience);
      expect(name).toMatch(/^jwt-svid\.[A-Za-z0-9._%-]+\.token$/);
      expect(name).not.toContain('/');
      expect(decodeAudience(encodeAudience(audience))).toBe(audience);
      expect(audienceOfJwtSvidFileName(name)).toBe(audience);
    }
  });

  it('refuses an empty audience with a typed error', () => {
    let caught: unknown;
    try {
      jwtSvidFileName('');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(LayoutError);
    expect((caught as LayoutError).kind).toBe('audience');
    expect((caught as LayoutError).message).toMatch(/^layout: /);
  });

  it.each([
    'jwt-svid.token',
    'jwt-svid..token.bak',
    'other.api.token',
    'jwt-svid.api.jwt',
    // Only the canonical spelling names an audience: no needless escapes, no lowercase hex.
    'jwt-svid.%61pi.token',
    'jwt-svid.%2f.token',
    'jwt-svid.a b.token',
    'jwt-svid.%.token',
    'jwt-svid.%2.token',
    // Not UTF-8.
    'jwt-svid.%FF.token',
    'jwt-svid.%C3.token',
  ])('%s names no audience', (name) => {
    expect(audienceOfJwtSvidFileName(name)).toBeUndefined();
  });
});

describe('one definition of the layout names', () => {
  it('the layout module is the one place they are exported from', () => {
    // The root and the other subpaths used to re-export some of them; now nothing but /layout does.
    for (const name of ['DATA_LINK', 'CREDENTIAL_BUNDLE_FILES', 'TRUST_BUNDLE_SUFFIX', 'JWT_BUNDLE_SUFFIX', 'DEFAULT_SPLIT_FILES', 'DEFAULT_JWT_SVID_FILE']) {
      expect(layout).toHaveProperty(name);
      for (const other of [sdk, source, jwt]) expect(other).not.toHaveProperty(name);
    }
    expect(layout.jwtSvidFileName).toBe(jwtSvidFileName);
  });

  it('the clock is at /clock, and not copied into the root', () => {
    expect(sdk).not.toHaveProperty('systemClock');
    expect(clock.systemClock.now()).toBeInstanceOf(Date);
  });
});
