import { describe, expect, it } from 'vitest';
import { childLogger, createLogger } from '../../driver/src/logging.js';

function capture() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

/** Every top-level key of one JSON log line, in order, duplicates kept (JSON.parse would hide them). */
function keysOf(line: string): string[] {
  return [...line.matchAll(/[{,]"([^"]+)":/g)].map((match) => match[1]!);
}

describe('driver logger', () => {
  it('names the driver once and each part once: no key appears twice in a line', () => {
    const { logger, lines } = capture();
    childLogger(childLogger(logger, { component: 'broker' }), { volumeId: 'csi-1' }).info({ pod: 'web' }, 'published');
    const keys = keysOf(lines[0]!);
    expect(new Set(keys).size).toBe(keys.length);
    expect(JSON.parse(lines[0]!)).toMatchObject({ name: 'spire-csi-driver', component: 'broker', volumeId: 'csi-1', pod: 'web', msg: 'published' });
  });

  it('redacts key material and tokens wherever a caller puts them', () => {
    const { logger, lines } = capture();
    logger.info({ keyDer: Buffer.from('secret'), svid: { privateKey: 'secret' }, token: 'eyJ.secret' }, 'never');
    expect(lines[0]).not.toContain('secret');
    expect(JSON.parse(lines[0]!)).toMatchObject({ keyDer: '[redacted]', svid: { privateKey: '[redacted]' }, token: '[redacted]' });
  });
});
