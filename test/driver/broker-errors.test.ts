import { existsSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import { DRIVER_ID } from '../helpers/broker-harness.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { BrokerNode, serialOf, type BrokerNodeOptions } from './broker-node.js';

const TIMEOUT_MS = 10_000;

interface CsiFailure {
  readonly code: number;
  readonly details: string;
}

/**
 * The Broker API error table, against the dev agent's real Broker endpoint: which answers fail a
 * publish at once, which wait for the publish timeout (on the driver's fake clock), and what each
 * message says.
 */
describe.skipIf(!isRoot)('broker mode: how each answer of the agent surfaces', () => {
  let node: BrokerNode;
  let clock: FakeClock;

  afterEach(async () => {
    await node?.cleanup();
  });

  async function start(options: BrokerNodeOptions = {}): Promise<void> {
    clock = new FakeClock(Date.now());
    node = await BrokerNode.create({ clock, publishTimeoutMs: TIMEOUT_MS, ...options });
    await node.startDriver();
  }

  /** Resolves once the volume's session has seen `count` agent errors. */
  function agentErrors(pod: EmulatedPod, count = 1): Promise<void> {
    const { volumeId } = node.kubelet.volumeFor(pod);
    let seen = 0;
    return new Promise((resolve) => {
      const listener = (event: VolumeErrorEvent): void => {
        if (event.kind !== 'agent-error' || event.volumeId !== volumeId || ++seen < count) return;
        node.driver!.manager.events.off('error', listener);
        resolve();
      };
      node.driver!.manager.events.on('error', listener);
    });
  }

  async function publishFailure(pod: EmulatedPod, ready: () => Promise<unknown>, attributes: Record<string, string> = {}): Promise<CsiFailure> {
    const outcome = node.kubelet.publish(pod, 'spiffe', attributes).then(
      () => null,
      (error: unknown) => error as CsiFailure,
    );
    await ready();
    // Only the publish timeout is left to wait for: let it pass on the driver's clock.
    await clock.advance(TIMEOUT_MS);
    const failure = await outcome;
    expect(failure).not.toBeNull();
    const { targetPath } = node.kubelet.volumeFor(pod);
    expect(existsSync(targetPath)).toBe(false);
    expect(await mountsUnder(node.root)).toEqual([]);
    return failure!;
  }

  async function immediateFailure(pod: EmulatedPod): Promise<CsiFailure> {
    const failure = await node.kubelet.publish(pod).then(() => null, (error: unknown) => error as CsiFailure);
    expect(failure).not.toBeNull();
    expect(existsSync(node.kubelet.volumeFor(pod).targetPath)).toBe(false);
    return failure!;
  }

  const reference = (pod: EmulatedPod): string => `pod reference ${pod.namespace}/${pod.name} (uid ${pod.uid})`;

  it('InvalidArgument fails the publish at once with FAILED_PRECONDITION and the server\'s message', async () => {
    await start();
    const pod = await node.pod('web');
    node.agent.injectBrokerError({ uid: pod.uid }, { code: status.INVALID_ARGUMENT, details: 'uid does not match the pod resolved by key', reason: 'WORKLOAD_REFERENCE_INVALID' });
    const failure = await immediateFailure(pod);
    expect(failure.code).toBe(status.FAILED_PRECONDITION);
    expect(failure.details).toContain(reference(pod));
    expect(failure.details).toContain('the SPIRE agent rejected the request as invalid (agent answered INVALID_ARGUMENT WORKLOAD_REFERENCE_INVALID: uid does not match the pod resolved by key)');
  });

  it('PermissionDenied for the driver itself fails at once with PERMISSION_DENIED, naming its SPIFFE ID and the setting', async () => {
    await start({ agent: { brokers: ['spiffe://example.org/ns/other/sa/other-broker'], brokerAuthz: 'call' } });
    const pod = await node.pod('web');
    const failure = await immediateFailure(pod);
    expect(failure.code).toBe(status.PERMISSION_DENIED);
    expect(failure.details).toContain(`the SPIRE agent does not allow this driver (SPIFFE ID ${DRIVER_ID}) to ask for pods`);
    expect(failure.details).toContain('experimental.broker.brokers');
    expect(failure.details).toContain('allowed_reference_types containing type.googleapis.com/spiffe.broker.KubernetesObjectReference');
  });

  it.each([
    [
      'NotFound with ErrorInfo',
      {},
      'the SPIRE agent does not find this pod (agent answered NOT_FOUND WORKLOAD_NOT_FOUND',
    ],
    ['NotFound without ErrorInfo', { errorInfo: false }, 'the SPIRE agent does not find this pod (agent answered NOT_FOUND:'],
  ])('%s waits for the timeout, then DEADLINE_EXCEEDED says the agent does not see the pod', async (_name, agent, message) => {
    await start({ agent });
    const pod = KubeletEmulator.pod({ serviceAccount: 'web' });
    const failure = await publishFailure(pod, () => agentErrors(pod));
    expect(failure.code).toBe(status.DEADLINE_EXCEEDED);
    expect(failure.details).toContain(`no usable X.509-SVID arrived within 10s for ${reference(pod)}`);
    expect(failure.details).toContain(message);
  });

  it.each([
    ['Unavailable', { code: status.UNAVAILABLE, details: 'agent is loading' }, 'is unavailable; is the SPIRE agent running with its experimental.broker endpoint there? (agent is loading)'],
    ['Unauthenticated', { code: status.UNAUTHENTICATED, details: 'workload attestation failed: kubelet unreachable' }, 'the SPIRE agent could not attest this pod (agent answered UNAUTHENTICATED: workload attestation failed: kubelet unreachable)'],
    [
      'PermissionDenied WORKLOAD_NOT_ENTITLED',
      { code: status.PERMISSION_DENIED, details: 'workload is not entitled', reason: 'WORKLOAD_NOT_ENTITLED' },
      'no registration entry matches this pod (agent answered PERMISSION_DENIED WORKLOAD_NOT_ENTITLED: workload is not entitled)',
    ],
  ])('%s is retried until the timeout, then DEADLINE_EXCEEDED says which', async (_name, fault, message) => {
    await start();
    const pod = await node.pod('web');
    node.agent.injectBrokerError({ uid: pod.uid }, fault);
    const failure = await publishFailure(pod, () => agentErrors(pod));
    expect(failure.code).toBe(status.DEADLINE_EXCEEDED);
    expect(failure.details).toContain(reference(pod));
    expect(failure.details).toContain(message);
  });

  it('zero SVIDs (no registration entry) wait for the timeout, then say no entry matches this pod', async () => {
    await start();
    const pod = await node.pod('nobody');
    const failure = await publishFailure(pod, () =>
      waitFor(() => node.logLines.some((line) => line.includes(node.kubelet.volumeFor(pod).volumeId) && line.includes('no usable SVID in the update yet')), { message: 'the empty update' }),
    );
    expect(failure.code).toBe(status.DEADLINE_EXCEEDED);
    expect(failure.details).toContain(`for ${reference(pod)}: the SPIRE agent returned no X.509-SVID (no registration entry matches this pod yet)`);
  });

  it('a broker missing from the allowlist is refused in the TLS handshake: retried, then the handshake message', async () => {
    await start({ agent: { brokers: ['spiffe://example.org/ns/other/sa/other-broker'], brokerAuthz: 'handshake' } });
    const pod = await node.pod('web');
    const failure = await publishFailure(pod, () => agentErrors(pod));
    expect(failure.code).toBe(status.DEADLINE_EXCEEDED);
    expect(failure.details).toContain(
      `the broker endpoint ${node.fixture.brokerEndpoint} refused the TLS handshake with the driver's SPIFFE ID ${DRIVER_ID}; ` +
        `add ${DRIVER_ID} to the SPIRE agent's experimental.broker.brokers allowlist`,
    );
    expect(node.driver!.identity.connectionProblem()).toBe(
      `broker endpoint ${node.fixture.brokerEndpoint} refused the TLS handshake: add the driver's SPIFFE ID ${DRIVER_ID} to the SPIRE agent's experimental.broker.brokers allowlist`,
    );
  });

  it('a server SVID other than --broker-id is refused by the driver, with the expected ID in the message', async () => {
    await start({ brokerId: 'spiffe://example.org/spire/agent/k8s_psat/cluster/node-1' });
    const pod = await node.pod('web');
    const failure = await publishFailure(pod, () => agentErrors(pod));
    expect(failure.code).toBe(status.DEADLINE_EXCEEDED);
    expect(failure.details).toContain(`the driver did not accept the certificate of the broker endpoint ${node.fixture.brokerEndpoint}`);
    expect(failure.details).toContain('--broker-id spiffe://example.org/spire/agent/k8s_psat/cluster/node-1');
    expect(failure.details).toContain('spiffe://example.org/spire/agent/dev');
    expect(node.agent.brokerStreamCount).toBe(0);
  });

  it('accepts the agent with a matching --broker-id', async () => {
    await start({ brokerId: 'spiffe://example.org/spire/agent/dev' });
    const volume = await node.kubelet.publish(await node.pod('web'));
    expect(await serialOf(volume.targetPath)).toMatch(/^[0-9A-F]+$/i);
    expect(node.logs()).not.toContain('no --broker-id');
  });

  it('once published, errors keep the files and the stream retries with backoff until the agent answers again', async () => {
    await start();
    const pod = await node.pod('web');
    const volume = await node.kubelet.publish(pod);
    const before = await serialOf(volume.targetPath);
    const first = agentErrors(pod);
    node.agent.injectBrokerError('all', { code: status.UNAVAILABLE, details: 'agent is loading' });
    node.agent.endBrokerStreams('all', { code: status.UNAVAILABLE, details: 'agent restarting' });
    await first;
    // Each retry is scheduled on the driver's clock, and fails again while the fault lasts.
    for (let retry = 0; retry < 3; retry++) {
      const next = agentErrors(pod);
      await clock.fireNext();
      await next;
    }
    expect(await serialOf(volume.targetPath)).toBe(before);
    expect(await mountsUnder(volume.targetPath)).toEqual([volume.targetPath]);
    node.agent.injectBrokerError('all', undefined);
    await clock.advance(60_000);
    await waitFor(() => node.agent.brokerStreamCount > 0, { message: 'the stream to resubscribe' });
    await node.agent.rotateNow();
    await waitFor(async () => (await serialOf(volume.targetPath)) !== before, { message: 'the rotation after the agent is back' });
  });

  it('a pod that leaves the agent\'s list ends its stream: the files stay and the stream comes back with the pod', async () => {
    await start();
    const pod = await node.pod('web');
    const volume = await node.kubelet.publish(pod);
    const before = await serialOf(volume.targetPath);
    const ended = agentErrors(pod);
    await node.removePods(pod);
    await ended;
    expect(node.logs()).toContain('the SPIRE agent ended the stream (the pod may have been deleted); the files stay until kubelet unpublishes the volume');
    expect(await serialOf(volume.targetPath)).toBe(before);
    await node.addPods(pod);
    await clock.advance(60_000);
    await waitFor(() => node.agent.brokerStreamCount > 0, { message: 'the stream to resubscribe' });
    await node.agent.rotateNow();
    await waitFor(async () => (await serialOf(volume.targetPath)) !== before, { message: 'updates for the returned pod' });
    await node.kubelet.unpublish(volume);
  });
});
