/**
 * The shape of @spire-csi/sdk as people install it: the public API against the committed reports
 * (sdk/api/), the packed tarball (only dist, README.md and LICENSE; publint; arethetypeswrong), and
 * the imports of the examples and the README (documented subpaths only, names that exist).
 *
 * Reads the built package: `npm test` builds first; alone, run `npm run build` before.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as root from '@spire-csi/sdk';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SDK = join(REPO, 'sdk');
const API_REPORT = join(SDK, 'scripts', 'api-report.mjs');

interface PackageJson {
  readonly exports: Record<string, string | Record<string, Record<string, string>>>;
  readonly files: readonly string[];
  readonly dependencies: Record<string, string>;
}

const pkg = JSON.parse(readFileSync(join(SDK, 'package.json'), 'utf8')) as PackageJson;
/** `./x509`, ...: every subpath with code behind it. */
const codeSubpaths = Object.keys(pkg.exports).filter((subpath) => subpath !== '.' && subpath !== './package.json');
/** What applications may import: the root and every subpath except the driver's unstable one. */
const documented = new Set(['@spire-csi/sdk', ...codeSubpaths.filter((s) => s !== './internal').map((s) => `@spire-csi/sdk/${s.slice(2)}`)]);

function requireBuilt(): void {
  if (!existsSync(join(SDK, 'dist', 'index.js'))) throw new Error('sdk/dist is missing: run `npm run build` first (this test reads the built package)');
}

describe('@spire-csi/sdk public API', () => {
  it('matches the committed reports in sdk/api/, and every public name is documented', () => {
    requireBuilt();
    const run = spawnSync(process.execPath, [API_REPORT, '--check'], { cwd: REPO, encoding: 'utf8' });
    // The script's own message says what changed and that `npm run api:update` refreshes sdk/api/.
    expect(run.status, `${run.stderr}${run.stdout}`).toBe(0);
  });

  it('every subpath of package.json exports has its source folder and its built files', () => {
    requireBuilt();
    for (const subpath of codeSubpaths.map((s) => s.slice(2))) {
      // tsup builds one entry per subpath (sdk/tsup.config.ts reads exports); the tsconfig paths and
      // the vitest alias map @spire-csi/sdk/<name> to sdk/src/<name>/index.ts.
      expect(existsSync(join(SDK, 'src', subpath, 'index.ts')), `sdk/src/${subpath}/index.ts`).toBe(true);
      for (const file of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts']) {
        expect(existsSync(join(SDK, 'dist', subpath, file)), `sdk/dist/${subpath}/${file}`).toBe(true);
      }
    }
  });

  it('the root exports what a service needs, and little else', () => {
    expect(Object.keys(root).length).toBeLessThanOrEqual(20);
    for (const name of ['FileSource', 'JwtSource', 'createHttpsServer', 'SpiffeDispatcher', 'authorizeId', 'SpiffeId', 'TrustDomain']) {
      expect(root).toHaveProperty(name);
    }
  });

  it('no documented subpath exports DER/PEM helpers, caches or internal machinery', async () => {
    const internalNames = [
      'readDer',
      'derChildren',
      'derContent',
      'derBytes',
      'derOid',
      'DerTag',
      'splitDer',
      'decodePem',
      'encodePem',
      'encodeCertificatesPem',
      'keyUsageOf',
      'extensionsOf',
      'X509SvidVerificationCache',
      'peerVerificationCache',
      'CredentialFolderReloader',
      'readSnapshot',
      'parseCredentialFiles',
      'MANAGED_TLS_OPTIONS',
      'silentLogger',
    ];
    for (const specifier of documented) {
      const module = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
      for (const name of internalNames) expect(module, `${specifier} exports ${name}`).not.toHaveProperty(name);
    }
  });
});

describe('the packed tarball', () => {
  let dir: string;
  let tarball: string;
  let files: string[];

  beforeAll(() => {
    requireBuilt();
    // Packed once; every check below reads this one tarball.
    dir = mkdtempSync(join(tmpdir(), 'spire-csi-sdk-pack-'));
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: SDK, encoding: 'utf8' });
    const [packed] = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
    tarball = join(dir, packed!.filename);
    files = packed!.files.map((file) => file.path);
  }, 60_000);

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('holds dist, README.md and LICENSE only (and package.json)', () => {
    const outside = files.filter((path) => !['package.json', 'README.md', 'LICENSE'].includes(path) && !path.startsWith('dist/'));
    expect(outside).toEqual([]);
    expect(files).toContain('LICENSE');
    expect(files).toContain('README.md');
    expect(files).toContain('dist/index.d.ts');
    expect(pkg.files).toEqual(['dist', 'README.md', 'LICENSE']);
  });

  it('passes publint (strict)', async () => {
    const data = readFileSync(tarball);
    const result = await publint({
      pack: { tarball: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) },
      strict: true,
      level: 'suggestion',
    });
    const messages = result.messages.map((message) => `${message.type}: ${formatMessage(message, result.pkg, { color: false }) ?? message.code}`);
    expect(messages).toEqual([]);
  });

  it('passes arethetypeswrong for node16 (ESM and CJS) and bundlers', () => {
    // node10 resolution predates `exports` and cannot see subpaths at all; it is not supported.
    const cliPackage = createRequire(import.meta.url).resolve('@arethetypeswrong/cli/package.json');
    const { bin } = JSON.parse(readFileSync(cliPackage, 'utf8')) as { bin: Record<string, string> };
    const cli = join(cliPackage, '..', bin.attw!);
    const run = spawnSync(process.execPath, [cli, tarball, '--profile', 'node16', '--no-color'], { encoding: 'utf8' });
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
  });
});

/** Every `.mjs` file and every markdown file of `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return filesUnder(path);
    return /\.(mjs|md)$/.test(name) ? [path] : [];
  });
}

/** The JavaScript of a file: a whole `.mjs`, or the js/ts code blocks of a markdown file. */
function codeOf(path: string): string {
  const text = readFileSync(path, 'utf8');
  if (path.endsWith('.mjs')) return text;
  return [...text.matchAll(/```(?:js|javascript|ts|typescript|mjs)\n([\s\S]*?)```/g)].map((match) => match[1]).join('\n');
}

interface SdkImport {
  readonly file: string;
  readonly specifier: string;
  readonly names: readonly string[];
}

function sdkImports(path: string): SdkImport[] {
  const out: SdkImport[] = [];
  for (const match of codeOf(path).matchAll(/import\s+(type\s+)?(\{[^}]*\}|\*\s+as\s+\w+|\w+)\s+from\s+['"](@spire-csi\/sdk[^'"]*)['"]/g)) {
    const clause = match[2]!;
    const names = clause.startsWith('{')
      ? clause
          .slice(1, -1)
          .split(',')
          .map((part) => part.trim())
          .filter((part) => part !== '' && !part.startsWith('type '))
          .map((part) => part.split(/\s+as\s+/)[0]!)
      : [];
    out.push({ file: relative(REPO, path), specifier: match[3]!, names: match[1] === undefined ? names : [] });
  }
  return out;
}

describe('imports in the examples and the SDK README', () => {
  const sources = [...filesUnder(join(REPO, 'examples')), join(SDK, 'README.md')];
  const imports = sources.flatMap(sdkImports);

  it('finds the imports it checks', () => {
    expect(imports.some((i) => i.file.startsWith('examples/'))).toBe(true);
    expect(imports.some((i) => i.file === 'sdk/README.md')).toBe(true);
  });

  it('use the root or documented subpaths only, never the internal one', () => {
    const undocumented = imports.filter((i) => !documented.has(i.specifier)).map((i) => `${i.file}: ${i.specifier}`);
    expect(undocumented).toEqual([]);
  });

  it('import only names their subpath exports', async () => {
    const missing: string[] = [];
    for (const { file, specifier, names } of imports) {
      if (!documented.has(specifier)) continue;
      const module = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
      for (const name of names) if (!(name in module)) missing.push(`${file}: ${name} from ${specifier}`);
    }
    expect(missing).toEqual([]);
  });
});
