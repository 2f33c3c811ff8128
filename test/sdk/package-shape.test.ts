/**
 * The shape of @spire-csi/sdk as people install it: the public API against the committed reports
 * (sdk/api/), the packed tarball (only dist, README.md and LICENSE; publint; arethetypeswrong), and
 * the imports of the examples and the README (documented subpaths only, names that exist), and gRPC
 * staying optional: only `/workload-api` and `/grpc` may load it.
 *
 * Reads the built package: `npm test` builds first; alone, run `npm run build` before.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
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
  readonly peerDependencies?: Record<string, string>;
  readonly peerDependenciesMeta?: Record<string, { readonly optional?: boolean }>;
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

/** The optional peer dependencies, and the only subpaths that may load them. */
const GRPC_PACKAGES = ['@grpc/grpc-js', '@grpc/proto-loader'];
const GRPC_SUBPATHS = new Set(['workload-api', 'grpc']);

/** Every bare specifier the built file `entry` imports or requires, following its relative imports (chunks). */
function bareImportsOf(entry: string): Set<string> {
  const bare = new Set<string>();
  const seen = new Set<string>();
  const pending = [entry];
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(pattern)) {
      if (specifier!.startsWith('.')) pending.push(resolve(dirname(file), specifier!));
      else bare.add(specifier!);
    }
  }
  return bare;
}

/** The built entry files: the root and every subpath, ESM and CJS. */
function builtEntries(): { readonly subpath: string; readonly file: string }[] {
  return ['.', ...codeSubpaths].flatMap((subpath) => {
    const dir = subpath === '.' ? join(SDK, 'dist') : join(SDK, 'dist', subpath.slice(2));
    return ['index.js', 'index.cjs'].map((name) => ({ subpath: subpath === '.' ? '.' : subpath.slice(2), file: join(dir, name) }));
  });
}

/** Loads `file` in a fresh Node process (import() or require()) and lists the gRPC modules it loaded. */
function grpcModulesLoadedBy(file: string): string[] {
  const script = [
    `const file = ${JSON.stringify(file)};`,
    "const load = file.endsWith('.cjs') ? Promise.resolve(require(file)) : import(file);",
    'load.then(() => {',
    // CommonJS packages (grpc-js, proto-loader, protobufjs) land in the require cache even when imported from ESM.
    "  const loaded = Object.keys(require.cache).filter((p) => /[\\\\/]node_modules[\\\\/](@grpc|protobufjs)[\\\\/]/.test(p));",
    '  process.stdout.write(JSON.stringify(loaded));',
    '});',
  ].join('\n');
  const run = spawnSync(process.execPath, ['-e', script], { cwd: REPO, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`loading ${file} failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as string[];
}

describe('gRPC is an optional peer dependency', () => {
  it('package.json lists @grpc/grpc-js and @grpc/proto-loader as optional peers, not as dependencies', () => {
    for (const name of GRPC_PACKAGES) {
      expect(pkg.dependencies).not.toHaveProperty(name);
      expect(pkg.peerDependencies?.[name], `peerDependencies["${name}"]`).toBeTypeOf('string');
      expect(pkg.peerDependenciesMeta?.[name]?.optional, `peerDependenciesMeta["${name}"].optional`).toBe(true);
    }
  });

  it('no built entry but /workload-api and /grpc imports gRPC, directly or through a chunk', () => {
    requireBuilt();
    const offenders: string[] = [];
    let grpcEntriesImportIt = 0;
    for (const { subpath, file } of builtEntries()) {
      const grpc = [...bareImportsOf(file)].filter((specifier) => GRPC_PACKAGES.some((name) => specifier === name || specifier.startsWith(`${name}/`)));
      if (GRPC_SUBPATHS.has(subpath)) grpcEntriesImportIt += grpc.length > 0 ? 1 : 0;
      else if (grpc.length > 0) offenders.push(`${relative(SDK, file)}: ${grpc.join(', ')}`);
    }
    expect(offenders).toEqual([]);
    // The scan finds the imports it is looking for (both formats of both gRPC subpaths).
    expect(grpcEntriesImportIt).toBe(4);
  });

  it('loading the root or any other subpath (ESM and CJS) leaves gRPC unloaded', { timeout: 60_000 }, () => {
    requireBuilt();
    const loaded = builtEntries()
      .filter(({ subpath }) => !GRPC_SUBPATHS.has(subpath))
      .flatMap(({ file }) => grpcModulesLoadedBy(file).map((module) => `${relative(SDK, file)} loaded ${relative(REPO, module)}`));
    expect(loaded).toEqual([]);
    // The probe does see gRPC when it is loaded.
    expect(grpcModulesLoadedBy(join(SDK, 'dist', 'grpc', 'index.js')).length).toBeGreaterThan(0);
    expect(grpcModulesLoadedBy(join(SDK, 'dist', 'workload-api', 'index.cjs')).length).toBeGreaterThan(0);
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
