import { EventEmitter } from 'node:events';
import { status, type ClientReadableStream } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Backoff } from '../../driver/src/retry/backoff.js';
import type { AgentError } from '../../driver/src/identity/identity-backend.js';
import { ReconnectingStream } from '../../driver/src/identity/delegated/reconnecting-stream.js';
import { FakeClock } from '../helpers/fake-clock.js';

class FakeCall extends EventEmitter {
  cancelled = false;
  cancel() {
    this.cancelled = true;
  }
  end(code: status, details = '') {
    this.emit('status', { code, details, metadata: null });
  }
}

function harness(openError?: Error) {
  const calls: FakeCall[] = [];
  const messages: string[] = [];
  const failures: { error: AgentError; retryInMs: number }[] = [];
  const clock = new FakeClock();
  const stream = new ReconnectingStream<string>({
    rpc: 'Sub',
    socketPath: '/s.sock',
    open: () => {
      if (openError) throw openError;
      const call = new FakeCall();
      calls.push(call);
      return call as unknown as ClientReadableStream<string>;
    },
    onMessage: (m) => messages.push(m),
    onFailure: (error, retryInMs) => failures.push({ error, retryInMs }),
    backoff: new Backoff({ initialMs: 10, maxMs: 80, jitter: 'none' }),
    clock,
  });
  const fire = () => clock.runNext();
  return { stream, calls, messages, failures, clock, fire };
}

describe('ReconnectingStream', () => {
  it('reconnects with growing delays and resets after a message', async () => {
    const h = harness();
    h.stream.start();
    h.calls[0]!.end(status.UNAVAILABLE, 'down');
    await h.fire();
    h.calls[1]!.end(status.UNAVAILABLE, 'down');
    expect(h.failures.map((f) => f.retryInMs)).toEqual([10, 20]);
    await h.fire();
    h.calls[2]!.emit('data', 'hello');
    h.calls[2]!.end(status.UNAVAILABLE);
    expect(h.messages).toEqual(['hello']);
    expect(h.failures.map((f) => f.retryInMs)).toEqual([10, 20, 10]);
  });

  it('treats the server ending the stream as the agent going away', () => {
    const h = harness();
    h.stream.start();
    h.calls[0]!.end(status.OK);
    expect(h.failures[0]!.error.kind).toBe('unavailable');
    expect(h.failures[0]!.error.message).toMatch(/ended the stream/);
    expect(h.clock.pendingTimers).toBe(1);
  });

  it('stops for good on close: cancels the call, clears the timer, ignores late events', async () => {
    const h = harness();
    h.stream.start();
    h.calls[0]!.end(status.UNAVAILABLE);
    await h.fire();
    h.stream.close();
    expect(h.calls[1]!.cancelled).toBe(true);
    h.calls[1]!.emit('data', 'late');
    h.calls[1]!.end(status.CANCELLED);
    expect(h.messages).toEqual([]);
    expect(h.failures).toHaveLength(1);
    expect(h.clock.pendingTimers).toBe(0);
    h.stream.start();
    expect(h.calls).toHaveLength(2);
  });

  it('closing from inside onFailure leaves nothing scheduled', () => {
    const h = harness();
    const stream = h.stream;
    h.stream.start();
    h.failures.push = function (this: unknown[], ...items) {
      stream.close();
      return Array.prototype.push.apply(this, items);
    };
    h.calls[0]!.end(status.UNAVAILABLE);
    expect(h.clock.pendingTimers).toBe(0);
  });

  it('reports a failure to open as an error and retries', async () => {
    const h = harness(new Error('boom'));
    h.stream.start();
    expect(h.failures[0]!.error.kind).toBe('other');
    expect(h.clock.pendingTimers).toBe(1);
  });
});
