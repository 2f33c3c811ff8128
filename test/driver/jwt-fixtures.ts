/**
 * JWT-SVID fixtures for driver tests that do not run the dev agent: an ES256 signer per trust
 * domain with its JWKS, minting tokens as an agent would send them.
 */
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { AgentJwtSvid } from '../../driver/src/identity/identity-backend.js';

export interface MintJwtOptions {
  readonly audiences?: readonly string[];
  /** Default: 5 minutes after `issuedAt`. */
  readonly expiresAt?: Date;
  readonly issuedAt?: Date;
  /** What the agent claims; defaults to `sub`. */
  readonly labelledAs?: string;
}

export class TestJwtIssuer {
  private constructor(
    readonly trustDomain: string,
    readonly kid: string,
    private readonly key: CryptoKey,
    private readonly publicJwk: Record<string, unknown>,
  ) {}

  static async create(trustDomain: string, kid = `${trustDomain}-key`): Promise<TestJwtIssuer> {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    return new TestJwtIssuer(trustDomain, kid, privateKey, { ...jwk, kid, use: 'jwt-svid' });
  }

  /** The JWKS document bytes, as the agent sends them. */
  jwks(): Buffer {
    return Buffer.from(JSON.stringify({ keys: [this.publicJwk] }));
  }

  async mint(sub: string, options: MintJwtOptions = {}): Promise<AgentJwtSvid> {
    const issuedAt = options.issuedAt ?? new Date();
    const expiresAt = options.expiresAt ?? new Date(issuedAt.getTime() + 300_000);
    const iat = Math.floor(issuedAt.getTime() / 1000);
    const exp = Math.floor(expiresAt.getTime() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.kid, typ: 'JWT' })
      .setSubject(sub)
      .setAudience([...(options.audiences ?? ['api'])])
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.key);
    return { token, spiffeId: options.labelledAs ?? sub, expiresAt: String(exp), issuedAt: String(iat), hint: '' };
  }
}

interface PendingTimer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A clock and timers moved by hand (the Timers seam of the driver), so refresh schedules can be
 * tested without waiting: `advance` fires every timer that falls due, in order.
 */
export class FakeClock {
  private current: number;
  private pending: PendingTimer[] = [];
  private nextId = 1;

  constructor(start = Date.parse('2030-01-01T00:00:00Z')) {
    this.current = start;
  }

  readonly now = (): Date => new Date(this.current);

  readonly timers = {
    setTimeout: (callback: () => void, ms: number): unknown => {
      const timer = { id: this.nextId++, at: this.current + Math.max(0, ms), callback };
      this.pending.push(timer);
      return timer.id;
    },
    clearTimeout: (handle: unknown): void => {
      this.pending = this.pending.filter((timer) => timer.id !== handle);
    },
  };

  get millis(): number {
    return this.current;
  }

  /** Delays of the pending timers from now, soonest first. */
  pendingDelays(): number[] {
    return this.pending.map((timer) => timer.at - this.current).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, firing due timers in order (letting promises settle after each). */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      const due = this.pending.filter((timer) => timer.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (due === undefined) break;
      this.pending = this.pending.filter((timer) => timer !== due);
      this.current = due.at;
      due.callback();
      await settle();
    }
    this.current = target;
  }

  /** Jumps to the soonest pending timer and fires it. */
  async fireNext(): Promise<number> {
    const delay = this.pendingDelays()[0];
    if (delay === undefined) throw new Error('FakeClock: no timer pending');
    await this.advance(delay);
    return delay;
  }
}

/** Lets pending promise callbacks (and a few chained ones) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
