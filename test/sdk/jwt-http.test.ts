import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, interceptors, request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { authorizeMemberOf } from '../../sdk/src/authorize/authorizer.js';
import { authenticateJwtSvid, jwtPeerId } from '../../sdk/src/http/authenticate.js';
import { bearerTokenInterceptor } from '../../sdk/src/http/bearer-interceptor.js';
import { HttpAuthError, JwtAuthenticationError } from '../../sdk/src/http/errors.js';
import { sdkError } from '../helpers/sdk-errors.js';
import { JwtBundleSet } from '../../sdk/src/jwt/jwt-bundle-set.js';
import { jwtSvidMiddleware, type JwtSvidMiddlewareOptions } from '../../sdk/src/http/middleware.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { bundleOf, createIssuer, mintJwtSvid, nowSeconds, type Issuer } from './jwt-fixtures.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const servers: Server[] = [];
const agents: Agent[] = [];

async function listen(handler: Handler): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function newAgent(): Agent {
  const agent = new Agent();
  agents.push(agent);
  return agent;
}

afterEach(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.close()));
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise<void>((done) => server.close(() => done()));
    }),
  );
});

/** Replies with the Authorization header it received (or "none"). */
const echoAuthorization: Handler = (req, res) => res.end(req.headers.authorization ?? 'none');

describe('bearerTokenInterceptor', () => {
  it('adds the current token for listed origins only, read at request time', async () => {
    const trusted = await listen(echoAuthorization);
    const other = await listen(echoAuthorization);
    const provider = { token: 'aaa.bbb.ccc', getToken(): string { return this.token; } };
    const dispatcher = newAgent().compose(bearerTokenInterceptor(provider, { origins: [trusted] }));

    const toTrusted = await request(`${trusted}/x`, { dispatcher });
    expect(await toTrusted.body.text()).toBe('Bearer aaa.bbb.ccc');
    const toOther = await request(`${other}/x`, { dispatcher });
    expect(await toOther.body.text()).toBe('none');

    provider.token = 'ddd.eee.fff';
    const afterRefresh = await request(`${trusted}/y`, { dispatcher });
    expect(await afterRefresh.body.text()).toBe('Bearer ddd.eee.fff');
  });

  it('does not follow a redirect to another origin with the token', async () => {
    const other = await listen(echoAuthorization);
    let firstHop = '';
    const trusted = await listen((req, res) => {
      firstHop = req.headers.authorization ?? 'none';
      res.writeHead(302, { location: `${other}/landing` }).end();
    });
    const seen: string[] = [];
    const dispatcher = newAgent().compose(
      bearerTokenInterceptor({ getToken: () => 'aaa.bbb.ccc' }, { origins: [trusted] }),
      (dispatch) => (opts, handler) => {
        seen.push(`${String(opts.origin)}${opts.path}`);
        return dispatch(opts, handler);
      },
      interceptors.redirect({ maxRedirections: 3 }),
    );
    const res = await request(`${trusted}/away`, { dispatcher });
    expect(firstHop).toBe('Bearer aaa.bbb.ccc');
    expect(await res.body.text()).toBe('none');
    expect(seen).toEqual([`${trusted}/away`, `${other}/landing`]);
  });

  it('keeps the caller\'s headers and an explicit Authorization header', async () => {
    const trusted = await listen((req, res) => res.end(`${req.headers.authorization ?? 'none'}|${req.headers['x-trace'] ?? ''}`));
    const dispatcher = newAgent().compose(bearerTokenInterceptor({ getToken: () => 'aaa.bbb.ccc' }, { origins: [new URL(trusted)] }));
    const withHeaders = await request(trusted, { dispatcher, headers: { 'x-trace': '42' } });
    expect(await withHeaders.body.text()).toBe('Bearer aaa.bbb.ccc|42');
    const explicit = await request(trusted, { dispatcher, headers: { Authorization: 'Basic Zm9vOmJhcg==' } });
    expect(await explicit.body.text()).toBe('Basic Zm9vOmJhcg==|');
  });

  it('passes the audience to the provider and fails the request when no token is available', async () => {
    const trusted = await listen(echoAuthorization);
    const asked: (string | undefined)[] = [];
    const provider = {
      getToken(audience?: string): string {
        asked.push(audience);
        throw new Error('jwtsource: not ready');
      },
    };
    const dispatcher = newAgent().compose(bearerTokenInterceptor(provider, { origins: [trusted], audience: 'api' }));
    await expect(request(trusted, { dispatcher })).rejects.toThrow(/not ready/);
    expect(asked).toEqual(['api']);
  });

  it('rejects bad configuration', () => {
    const provider = { getToken: () => 'a.b.c' };
    expect(() => bearerTokenInterceptor(provider, { origins: [] })).toThrow(sdkError(HttpAuthError, 'config'));
    expect(() => bearerTokenInterceptor(provider, { origins: ['https://api.test/path'] })).toThrow(/scheme:\/\/host\[:port\] only/);
    expect(() => bearerTokenInterceptor(provider, { origins: ['ftp://api.test'] })).toThrow(/http: or https:/);
    expect(() => bearerTokenInterceptor(provider, { origins: ['not a url'] })).toThrow(/not a URL/);
  });
});

describe('jwtSvidMiddleware', () => {
  let issuer: Issuer;
  let bundles: JwtBundleSet;

  beforeAll(async () => {
    issuer = await createIssuer('example.org', 'ec-1');
    bundles = new JwtBundleSet([bundleOf('example.org', issuer)]);
  });

  async function serve(options: Partial<JwtSvidMiddlewareOptions> = {}): Promise<string> {
    const auth = jwtSvidMiddleware({ audience: 'api', bundles, ...options });
    return listen((req, res) =>
      auth(req, res, (err) => {
        if (err !== undefined) {
          res.statusCode = 500;
          res.end('server error');
          return;
        }
        res.end(`hello ${jwtPeerId(req)?.toString() ?? 'nobody'}`);
      }),
    );
  }

  async function call(origin: string, token?: string): Promise<{ status: number; body: string; wwwAuthenticate: unknown }> {
    const res = await request(`${origin}/items`, {
      dispatcher: newAgent(),
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: res.statusCode, body: await res.body.text(), wwwAuthenticate: res.headers['www-authenticate'] };
  }

  it('lets a valid JWT-SVID through and records the peer ID', async () => {
    const origin = await serve({ authorizer: authorizeMemberOf('example.org') });
    const res = await call(origin, await mintJwtSvid(issuer));
    expect(res).toMatchObject({ status: 200, body: 'hello spiffe://example.org/workload' });
  });

  it('answers 401 without a token', async () => {
    const res = await call(await serve());
    expect(res.status).toBe(401);
    expect(res.wwwAuthenticate).toBe('Bearer');
    expect(JSON.parse(res.body)).toEqual({ error: 'unauthorized', reason: 'missing bearer token' });
  });

  it('answers 401 for a wrong audience without echoing the token', async () => {
    const token = await mintJwtSvid(issuer, { aud: 'billing' });
    const res = await call(await serve(), token);
    expect(res.status).toBe(401);
    expect(res.wwwAuthenticate).toBe('Bearer error="invalid_token"');
    expect(JSON.parse(res.body)).toEqual({ error: 'unauthorized', reason: 'token audience not accepted' });
    expect(res.body).not.toContain(token);
  });

  it('answers 401 for an expired token', async () => {
    const res = await call(await serve(), await mintJwtSvid(issuer, { exp: nowSeconds() - 3600 }));
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).reason).toBe('token has expired');
  });

  it('answers 403 when the authorizer refuses the verified ID', async () => {
    const origin = await serve({
      authorizer: (id) => {
        if (id.path !== '/admin') throw new Error('only the admin workload');
      },
    });
    const res = await call(origin, await mintJwtSvid(issuer));
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ error: 'forbidden', reason: 'forbidden' });
  });

  it('reads bundles from a function on every request', async () => {
    let current = new JwtBundleSet();
    const origin = await serve({ bundles: () => current });
    const token = await mintJwtSvid(issuer);
    expect((await call(origin, token)).status).toBe(401);
    current = bundles;
    expect((await call(origin, token)).status).toBe(200);
  });

  it('hands server-side failures to next(err) instead of blaming the client', async () => {
    const origin = await serve({
      bundles: () => {
        throw new Error('bundle store down');
      },
    });
    // The bundles callback failing is the server's problem, not an invalid token.
    const res = await call(origin, await mintJwtSvid(issuer));
    expect(res.status).toBe(500);
  });
});

describe('authenticateJwtSvid', () => {
  it('works on anything with headers and throws typed errors', async () => {
    const issuer = await createIssuer('example.org', 'ec-1');
    const bundles = new JwtBundleSet([bundleOf('example.org', issuer)]);
    const token = await mintJwtSvid(issuer);
    const req = { headers: { authorization: `bearer ${token}` } };
    const id = await authenticateJwtSvid(req, { audience: 'api', bundles });
    expect(id.toString()).toBe('spiffe://example.org/workload');
    expect(jwtPeerId(req)).toBe(id);

    const fetchStyle = { headers: new Headers({ authorization: `Bearer ${token}` }) };
    await expect(authenticateJwtSvid(fetchStyle, { audience: 'api', bundles })).resolves.toBeTruthy();

    for (const headers of [{}, { authorization: 'Basic Zm9v' }, { authorization: 'Bearer' }, { authorization: ['Bearer a', 'Bearer b'] }]) {
      const err = await authenticateJwtSvid({ headers }, { audience: 'api', bundles }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(JwtAuthenticationError);
      expect((err as JwtAuthenticationError).statusCode).toBe(401);
      expect(jwtPeerId(headers)).toBeUndefined();
    }
    const refused = await authenticateJwtSvid(
      { headers: { authorization: `Bearer ${token}` } },
      { audience: 'api', bundles, authorizer: authorizeMemberOf('partner.test') },
    ).catch((e: unknown) => e);
    expect(refused).toMatchObject({ statusCode: 403, reason: 'forbidden' });
    expect((refused as Error).message).toMatch(/^jwtauth: spiffe:\/\/example.org\/workload is not authorized: authorize: /);
  });

  it('judges exp and nbf by the injected clock', async () => {
    const issuer = await createIssuer('example.org', 'ec-1');
    const bundles = new JwtBundleSet([bundleOf('example.org', issuer)]);
    const exp = nowSeconds() + 600;
    const token = await mintJwtSvid(issuer, { exp, nbf: exp - 1200 });
    const req = (): { headers: { authorization: string } } => ({ headers: { authorization: `Bearer ${token}` } });
    const clock = new FakeClock(exp * 1000 - 60_000);
    await expect(authenticateJwtSvid(req(), { audience: 'api', bundles, clock })).resolves.toBeTruthy();
    // Past exp plus the default 30 s of skew.
    clock.set(new Date(exp * 1000 + 31_000));
    await expect(authenticateJwtSvid(req(), { audience: 'api', bundles, clock })).rejects.toMatchObject({ statusCode: 401, reason: 'token has expired' });
    clock.set(new Date((exp - 1200) * 1000 - 31_000));
    await expect(authenticateJwtSvid(req(), { audience: 'api', bundles, clock })).rejects.toMatchObject({ statusCode: 401, reason: 'token is not valid yet' });
  });
});
