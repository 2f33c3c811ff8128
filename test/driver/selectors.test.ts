import { describe, expect, it } from 'vitest';
import { buildSelectors, formatSelectors, parseSelector, SelectorError } from '../../driver/src/identity/delegated/selectors.js';

const pod = { name: 'web-7d9f', namespace: 'default', uid: '0b6c3c1e-1111-2222-3333-444455556666', serviceAccount: 'web' };

describe('buildSelectors', () => {
  it('asserts the five k8s facts in SPIRE wire form', () => {
    expect(buildSelectors(pod, 'node-a')).toEqual([
      { type: 'k8s', value: 'ns:default' },
      { type: 'k8s', value: 'sa:web' },
      { type: 'k8s', value: 'pod-uid:0b6c3c1e-1111-2222-3333-444455556666' },
      { type: 'k8s', value: 'pod-name:web-7d9f' },
      { type: 'k8s', value: 'node-name:node-a' },
    ]);
  });

  it('leaves out facts that are empty instead of sending "k8s:sa:"', () => {
    const selectors = buildSelectors({ ...pod, serviceAccount: '' }, '');
    expect(formatSelectors(selectors)).toBe(
      'k8s:ns:default, k8s:pod-uid:0b6c3c1e-1111-2222-3333-444455556666, k8s:pod-name:web-7d9f',
    );
  });
});

describe('formatSelectors', () => {
  it('joins type:value pairs for messages', () => {
    expect(formatSelectors([{ type: 'k8s', value: 'ns:default' }, { type: 'unix', value: 'uid:0' }])).toBe(
      'k8s:ns:default, unix:uid:0',
    );
    expect(formatSelectors([])).toBe('');
  });
});

describe('parseSelector', () => {
  it.each([
    ['k8s:ns:default', { type: 'k8s', value: 'ns:default' }],
    ['unix:uid:0', { type: 'unix', value: 'uid:0' }],
    ['k8s:pod-label:app:web', { type: 'k8s', value: 'pod-label:app:web' }],
  ])('splits %s at the first colon', (text, expected) => {
    expect(parseSelector(text)).toEqual(expected);
  });

  it.each(['k8s', ':ns:default', 'k8s:', ''])('rejects %j', (text) => {
    expect(() => parseSelector(text)).toThrow(SelectorError);
    expect(() => parseSelector(text)).toThrow(/^selectors: /);
  });
});
