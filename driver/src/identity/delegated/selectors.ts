import type { PodReference } from '../pod-reference.js';

/** A SPIRE selector in wire form: `k8s` / `ns:default`. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

/**
 * The Kubernetes selectors the driver asserts for a pod, in SPIRE's wire form: type `k8s`, value
 * `<name>:<value>` (the agent's k8s workload attestor produces the same strings, so entries written
 * for it match). SPIRE picks every entry whose selectors are a subset of these, so sending more
 * facts never grants less; a fact that is empty is left out rather than sent as `k8s:sa:`.
 */
export function buildSelectors(pod: PodReference, nodeName: string): Selector[] {
  const facts: [string, string][] = [
    ['ns', pod.namespace],
    ['sa', pod.serviceAccount],
    ['pod-uid', pod.uid],
    ['pod-name', pod.name],
    ['node-name', nodeName],
  ];
  return facts.filter(([, value]) => value !== '').map(([name, value]) => ({ type: 'k8s', value: `${name}:${value}` }));
}

/** `k8s:ns:default, k8s:sa:web` — for log lines and error messages. */
export function formatSelectors(selectors: readonly Selector[]): string {
  return selectors.map(formatSelector).join(', ');
}

export function formatSelector(selector: Selector): string {
  return `${selector.type}:${selector.value}`;
}

export class SelectorError extends Error {
  constructor(message: string) {
    super(`selectors: ${message}`);
    this.name = 'SelectorError';
  }
}

/**
 * Parses `type:value` as SPIRE's CLI does: the type ends at the first colon and the value keeps
 * the rest, so `k8s:ns:default` is type `k8s`, value `ns:default`.
 */
export function parseSelector(text: string): Selector {
  const colon = text.indexOf(':');
  if (colon <= 0 || colon === text.length - 1) {
    throw new SelectorError(`"${text}" is not a selector; expected type:value, e.g. k8s:ns:default`);
  }
  return { type: text.slice(0, colon), value: text.slice(colon + 1) };
}
