import { execFileSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { asKubeObject, parseYamlDocuments, type KubeObject } from './kube-yaml.js';

/*
 * kubectl as the reference kustomize renderer, when the machine has it. CI machines may not
 * (and Debian's kubernetes-client is too old for deploy/'s `labels`), so nothing here is required:
 * callers fall back to mini-kustomize.ts.
 */

/**
 * Set to 1 to make the deploy/ tests behave as on a machine without kubectl (kubectl is then
 * neither used for rendering nor for re-checking the committed fixtures).
 */
export const NO_KUBECTL_ENV = 'SPIRE_CSI_TEST_NO_KUBECTL';

/** The kubectl executable on PATH, or undefined when there is none (or NO_KUBECTL_ENV=1). */
export function findKubectl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env[NO_KUBECTL_ENV] === '1') return undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'kubectl');
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // Not in this PATH entry; try the next one.
    }
  }
  return undefined;
}

/** `kubectl kustomize <dir>`, parsed; `label` names the directory in errors. */
export function kubectlKustomize(kubectl: string, dir: string, label: string = dir): KubeObject[] {
  let text: string;
  try {
    text = execFileSync(kubectl, ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(`kubectl kustomize ${label} failed: ${e.stderr || e.message}`, { cause: error });
  }
  return parseYamlDocuments(text, `kubectl kustomize ${label}`).map((v, i) => asKubeObject(v, `${label} document ${i}`));
}
