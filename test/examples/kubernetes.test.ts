/**
 * examples/kubernetes: every manifest validates against the Kubernetes schemas (kubernetes-models),
 * and the pods follow the examples' contract: a read-only csi.spire.io volume mounted where
 * SPIFFE_CREDENTIAL_FOLDER points, a command that exists, and peers that name each other's
 * SPIFFE IDs as the workload registration would issue them.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Pod, Service, ServiceAccount, type IPod } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { SpiffeId } from '@spire-csi/sdk';
import { examplePath } from './harness.js';

type Doc = { kind?: string; metadata?: { name?: string } } & Record<string, unknown>;

async function manifests(relative: string): Promise<Doc[]> {
  const docs = parseAllDocuments(await readFile(examplePath(relative), 'utf8'));
  for (const doc of docs) expect(doc.errors, relative).toEqual([]);
  return docs.map((doc) => doc.toJS() as Doc);
}

function validate(doc: Doc): void {
  const models = { Pod, Service, ServiceAccount } as const;
  const Model = models[doc.kind as keyof typeof models];
  expect(Model, `a model for kind ${doc.kind}`).toBeDefined();
  // Throws with the JSON path of the first schema violation.
  new Model(doc as never).validate();
}

function envOf(container: NonNullable<IPod['spec']>['containers'][number]): Record<string, string> {
  return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
}

/** The ID deploy/clusterspiffeid-workloads.yaml gives a pod: ns/<namespace>/sa/<service account>. */
function workloadId(trustDomain: string, pod: IPod): string {
  return `spiffe://${trustDomain}/ns/${pod.metadata?.namespace ?? 'default'}/sa/${pod.spec?.serviceAccountName}`;
}

const FILES = ['kubernetes/pod.yaml', 'kubernetes/client-pod.yaml'];

describe('examples/kubernetes', () => {
  const docs = new Map<string, Doc[]>();
  beforeAll(async () => {
    for (const file of FILES) docs.set(file, await manifests(file));
  });
  const pod = (file: string): IPod => docs.get(file)!.find((d) => d.kind === 'Pod') as unknown as IPod;

  it.each(FILES)('%s validates against the Kubernetes schemas', (file) => {
    const all = docs.get(file)!;
    expect(all.map((d) => d.kind)).toContain('Pod');
    for (const doc of all) validate(doc);
  });

  it.each(FILES)('%s mounts the spire-csi volume read-only where SPIFFE_CREDENTIAL_FOLDER points', (file) => {
    const spec = pod(file).spec!;
    const volumes = (spec.volumes ?? []).filter((v) => v.csi?.driver === 'csi.spire.io');
    expect(volumes).toHaveLength(1);
    expect(volumes[0]!.csi!.readOnly).toBe(true);
    expect(spec.securityContext?.fsGroup, 'fsGroup lets the non-root user read the key').toBeTypeOf('number');
    expect(spec.automountServiceAccountToken).toBe(false);

    expect(spec.containers).toHaveLength(1);
    const container = spec.containers[0]!;
    const mount = container.volumeMounts?.find((m) => m.name === volumes[0]!.name);
    expect(mount?.readOnly).toBe(true);
    expect(envOf(container).SPIFFE_CREDENTIAL_FOLDER).toBe(mount?.mountPath);
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
  });

  it.each(FILES)('%s runs an example that exists, from the image built by the Dockerfile', async (file) => {
    const container = pod(file).spec!.containers[0]!;
    const [node, script] = container.command ?? [];
    expect(node).toBe('node');
    expect(existsSync(examplePath(script!.replace(/^examples\//, '')))).toBe(true);
    const dockerfile = await readFile(examplePath('kubernetes/Dockerfile'), 'utf8');
    expect(container.image).toBe(/-t (\S+) \./.exec(dockerfile)?.[1]);
    expect(dockerfile).toMatch(/^COPY examples\/ examples\/$/m);
  });

  it('the Dockerfile copies only files that exist', async () => {
    const dockerfile = await readFile(examplePath('kubernetes/Dockerfile'), 'utf8');
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(existsSync(join(examplePath('..'), source)), source).toBe(true);
  });

  it('server and client admit each other by SPIFFE ID, and the client finds the Service', () => {
    const serverPod = pod('kubernetes/pod.yaml');
    const clientPod = pod('kubernetes/client-pod.yaml');
    const serverEnv = envOf(serverPod.spec!.containers[0]!);
    const clientEnv = envOf(clientPod.spec!.containers[0]!);

    const allowedClient = SpiffeId.parse(serverEnv.ALLOWED_SPIFFE_ID!);
    const allowedServer = SpiffeId.parse(clientEnv.ALLOWED_SPIFFE_ID!);
    const td = allowedClient.trustDomain.name;
    expect(allowedClient.toString()).toBe(workloadId(td, clientPod));
    expect(allowedServer.toString()).toBe(workloadId(td, serverPod));

    const service = docs.get('kubernetes/pod.yaml')!.find((d) => d.kind === 'Service') as unknown as {
      metadata: { name: string };
      spec: { selector: Record<string, string>; ports: { port: number; targetPort: string }[] };
    };
    expect(serverPod.metadata?.labels).toMatchObject(service.spec.selector);
    const containerPort = serverPod.spec!.containers[0]!.ports!.find((p) => p.name === service.spec.ports[0]!.targetPort);
    expect(String(containerPort?.containerPort)).toBe(serverEnv.PORT);

    const target = new URL(clientEnv.TARGET_URL!);
    expect(target.protocol).toBe('https:');
    expect(target.hostname.split('.')[0]).toBe(service.metadata.name);
    expect(Number(target.port)).toBe(service.spec.ports[0]!.port);
    expect(clientEnv.REQUEST_COUNT).toMatch(/^\d+$/);
  });
});
