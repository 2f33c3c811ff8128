/**
 * Shared fixtures for tests that talk to the dev agent over a real unix socket: a tmp dir per
 * agent, a raw Delegated Identity client (independent of the driver's client) and a stream
 * recorder.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type Client, type ClientReadableStream, type StatusObject } from '@grpc/grpc-js';
import { DevAgent, type DevAgentOptions } from '../../dev/src/dev-agent/server.js';
import { validateRegistrations } from '../../dev/src/dev-agent/registrations.js';
import { loadProtos } from '../../driver/src/proto/load.js';
import type {
  WireSubscribeToX509BundlesResponse,
  WireSubscribeToX509SvidsResponse,
} from '../../driver/src/identity/delegated/wire.js';

export const TD = 'example.org';

export interface RawDelegatedIdentity extends Client {
  SubscribeToX509SVIDs(request: object): ClientReadableStream<WireSubscribeToX509SvidsResponse>;
  SubscribeToX509Bundles(request: object): ClientReadableStream<WireSubscribeToX509BundlesResponse>;
}

export interface AgentFixture {
  readonly agent: DevAgent;
  readonly dir: string;
  readonly socketPath: string;
  cleanup(): Promise<void>;
}

/** JSON-format registrations (as in the file) for brevity in tests. */
export function registrations(json: unknown) {
  return validateRegistrations(json, TD);
}

export async function startAgent(options: Partial<DevAgentOptions> = {}): Promise<AgentFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'spire-csi-agent-'));
  const socketPath = join(dir, 'admin.sock');
  const agent = new DevAgent({ socketPath, trustDomain: TD, ...options });
  await agent.start();
  return {
    agent,
    dir,
    socketPath,
    async cleanup() {
      await agent.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function rawClient(socketPath: string): RawDelegatedIdentity {
  const { DelegatedIdentity } = loadProtos().delegatedIdentity;
  return new DelegatedIdentity(`unix:${socketPath}`, credentials.createInsecure()) as unknown as RawDelegatedIdentity;
}

export interface Recording<T> {
  readonly messages: T[];
  status: StatusObject | null;
  readonly call: ClientReadableStream<T>;
}

export function record<T>(call: ClientReadableStream<T>): Recording<T> {
  const recording: Recording<T> = { messages: [], status: null, call };
  call.on('data', (message: T) => recording.messages.push(message));
  call.on('error', () => {});
  call.on('status', (status: StatusObject) => {
    recording.status = status;
  });
  return recording;
}

export const k8s = (...values: string[]) => values.map((value) => ({ type: 'k8s', value }));
