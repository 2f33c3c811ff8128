import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/*
 * deploy/Dockerfile checked without Docker: every COPY source exists in the build context (the
 * repository minus .dockerignore) or in the stage it is copied from, the entrypoint is a file the
 * image has, and nothing of the dev workspace (dev agent, demo, @peculiar/x509, reflect-metadata)
 * reaches the runtime image.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DOCKERFILE = readFileSync(join(REPO, 'deploy', 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(join(REPO, '.dockerignore'), 'utf8');

interface Copy {
  readonly from: string | null;
  readonly sources: readonly string[];
  /** Absolute, resolved against the WORKDIR in effect. */
  readonly dest: string;
  readonly destIsDir: boolean;
}

interface Stage {
  readonly name: string;
  readonly copies: Copy[];
  readonly runs: string[];
  workdir: string;
  entrypoint: string[] | null;
}

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const raw of text.replace(/\\\r?\n/g, ' ').split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [, keyword = '', rest = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const args = rest.trim();
    if (keyword.toUpperCase() === 'FROM') {
      const name = /\sAS\s+(\S+)$/i.exec(args)?.[1] ?? String(stages.length);
      stages.push({ name, copies: [], runs: [], workdir: '/', entrypoint: null });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`Dockerfile: ${keyword} before the first FROM`);
    switch (keyword.toUpperCase()) {
      case 'WORKDIR':
        stage.workdir = posix.resolve(stage.workdir, args);
        break;
      case 'RUN':
        stage.runs.push(args);
        break;
      case 'ENTRYPOINT':
        stage.entrypoint = JSON.parse(args) as string[];
        break;
      case 'COPY':
      case 'ADD': {
        const words = args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
        const flags = words.filter((w) => w.startsWith('--'));
        const paths = words.filter((w) => !w.startsWith('--'));
        const dest = paths.pop()!;
        const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length) ?? null;
        stage.copies.push({ from, sources: paths, dest: posix.resolve(stage.workdir, dest), destIsDir: dest.endsWith('/') || paths.length > 1 });
        break;
      }
    }
  }
  return stages;
}

/** .dockerignore as Docker reads it: patterns from the context root, last match wins, a parent's match covers its files. */
function dockerIgnored(path: string): boolean {
  const rules = DOCKERIGNORE.split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negated = l.startsWith('!');
      const pattern = posix.normalize((negated ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/$/, '');
      const source = pattern
        .split(/(\*\*\/?|\*|\?)/)
        .map((part) => {
          if (part === '**/') return '(?:.*/)?';
          if (part === '**') return '.*';
          if (part === '*') return '[^/]*';
          if (part === '?') return '[^/]';
          return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
        })
        .join('');
      return { negated, regex: new RegExp(`^${source}$`) };
    });
  const parts = posix.normalize(path).replace(/\/$/, '').split('/');
  let ignored = false;
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    for (const rule of rules) if (rule.regex.test(prefix)) ignored = !rule.negated;
  }
  return ignored;
}

/** A path in the build context (repository-relative) that Docker would send. */
function inContext(repoPath: string): boolean {
  return existsSync(join(REPO, repoPath)) && !dockerIgnored(repoPath);
}

type Origin =
  | { readonly kind: 'context'; readonly repoPath: string }
  /** node_modules from `npm ci` or dist/ from `npm run build` in that stage. */
  | { readonly kind: 'generated'; readonly stage: string; readonly path: string }
  /** A folder that holds copied files, e.g. sdk/ after `COPY sdk/package.json sdk/`. */
  | { readonly kind: 'folder' };

const stages = parseDockerfile(DOCKERFILE);
const runtime = stages.at(-1)!;
const stageNamed = (name: string): Stage => {
  const stage = stages.find((s) => s.name === name);
  if (stage === undefined) throw new Error(`Dockerfile: no stage "${name}"`);
  return stage;
};

function isDir(origin: Origin): boolean {
  if (origin.kind === 'context') return statSync(join(REPO, origin.repoPath)).isDirectory();
  return true;
}

/** Workspace folders a stage's `npm run build` builds: every one, or those named with -w. */
function builtWorkspaces(stage: Stage): string[] {
  const names = new Set<string>();
  let all = false;
  for (const run of stage.runs) {
    for (const command of run.split('&&')) {
      if (!/\bnpm run build\b/.test(command)) continue;
      const named = [...command.matchAll(/(?:-w|--workspace)[=\s]+(\S+)/g)].map((m) => m[1]!);
      if (named.length === 0) all = true;
      for (const name of named) names.add(name);
    }
  }
  const root = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { workspaces: string[] };
  return root.workspaces.filter((folder) => {
    if (!existsSync(join(REPO, folder, 'package.json'))) return false;
    const pkg = JSON.parse(readFileSync(join(REPO, folder, 'package.json'), 'utf8')) as { name: string };
    return all || names.has(pkg.name);
  });
}

/** Where `path` in `stage` comes from, or null when nothing in that stage put it there. */
function originOf(stage: Stage, path: string): Origin | null {
  const rel = posix.relative(stage.workdir, path);
  const inWorkdir = !rel.startsWith('..');
  if (inWorkdir && /^(?:[^/]+\/)?node_modules(\/|$)/.test(rel) && stage.runs.some((r) => /\bnpm ci\b/.test(r))) {
    return { kind: 'generated', stage: stage.name, path };
  }
  const dist = /^([^/]+)\/dist(\/|$)/.exec(rel);
  if (inWorkdir && dist && builtWorkspaces(stage).includes(dist[1]!)) return { kind: 'generated', stage: stage.name, path };
  // Later copies overwrite earlier ones.
  for (const copy of [...stage.copies].reverse()) {
    for (const source of copy.sources) {
      const sourceOrigin = copy.from === null ? (inContext(source) ? ({ kind: 'context', repoPath: posix.normalize(source) } as const) : null) : originOf(stageNamed(copy.from), source);
      if (sourceOrigin === null) continue;
      const landing = copy.destIsDir && !isDir(sourceOrigin) ? posix.join(copy.dest, posix.basename(source)) : copy.dest;
      if (path === landing || path.startsWith(`${landing}/`)) {
        const rest = posix.relative(landing, path);
        if (rest === '') return sourceOrigin;
        const inner = posix.join(source, rest);
        const found = copy.from === null ? (inContext(inner) ? ({ kind: 'context', repoPath: inner } as const) : null) : originOf(stageNamed(copy.from), inner);
        if (found !== null) return found;
      } else if (landing.startsWith(`${path.replace(/\/$/, '')}/`)) {
        return { kind: 'folder' };
      }
    }
  }
  return null;
}

/** Every repository path that reaches `stage`, directly or through the stages it copies from. */
function contextSources(stage: Stage, seen = new Set<string>()): string[] {
  if (seen.has(stage.name)) return [];
  seen.add(stage.name);
  return stage.copies.flatMap((c) => (c.from === null ? c.sources.map((s) => posix.normalize(s)) : contextSources(stageNamed(c.from), seen)));
}

interface LockPackage {
  readonly link?: boolean;
  readonly resolved?: string;
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
}

/** Package names a workspace needs at run time, resolved through package-lock.json as npm lays them out. */
function productionClosure(workspace: string): Set<string> {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
  const names = new Set<string>();
  const visited = new Set<string>();
  const visit = (key: string): void => {
    if (visited.has(key)) return;
    visited.add(key);
    const entry = lock.packages[key];
    if (entry === undefined) throw new Error(`package-lock.json has no "${key}"`);
    if (entry.link === true && entry.resolved !== undefined) return visit(entry.resolved);
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) {
      names.add(name);
      // Node's lookup: the package's own node_modules, then each parent's, up to the root.
      let base = key;
      let found: string | undefined;
      for (;;) {
        const candidate = base === '' ? `node_modules/${name}` : `${base}/node_modules/${name}`;
        if (lock.packages[candidate] !== undefined) {
          found = candidate;
          break;
        }
        if (base === '') break;
        const cut = base.lastIndexOf('/node_modules/');
        base = cut < 0 ? '' : base.slice(0, cut);
      }
      if (found !== undefined) visit(found);
      else if (entry.dependencies?.[name] !== undefined) throw new Error(`package-lock.json cannot resolve ${name} for "${key}"`);
    }
  };
  visit(workspace);
  return names;
}

describe('deploy/Dockerfile', () => {
  it('copies only what the build context has', () => {
    const fromContext = stages.flatMap((s) => s.copies.filter((c) => c.from === null).flatMap((c) => c.sources));
    expect(fromContext.length).toBeGreaterThan(0);
    for (const source of fromContext) {
      expect(existsSync(join(REPO, source)), `${source} exists in the repository`).toBe(true);
      expect(dockerIgnored(source), `${source} is not excluded by .dockerignore`).toBe(false);
    }
  });

  it('copies from other stages only what those stages have', () => {
    const fromStages = stages.flatMap((s) => s.copies.filter((c) => c.from !== null));
    expect(fromStages.length).toBeGreaterThan(0);
    for (const copy of fromStages) {
      for (const source of copy.sources) expect(originOf(stageNamed(copy.from!), source), `${source} in stage ${copy.from}`).not.toBeNull();
    }
  });

  it('starts a script the runtime image has, the bin of the driver package', () => {
    const argv = runtime.entrypoint;
    expect(argv?.[0]).toBe('node');
    // Node and V8 flags come before the script (bench/ runs the driver with the same ones).
    const script = argv!.slice(1).find((arg) => !arg.startsWith('--'));
    const origin = originOf(runtime, script!);
    const pkg = JSON.parse(readFileSync(join(REPO, 'driver', 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(origin).toEqual({ kind: 'context', repoPath: posix.join('driver', pkg.bin['spire-csi-driver']!) });
  });

  it('keeps the dev workspace out of the context and out of every stage', () => {
    expect(dockerIgnored('dev')).toBe(true);
    for (const stage of stages) {
      for (const source of contextSources(stage)) {
        expect(source === '.' || source === 'dev' || source.startsWith('dev/'), `stage ${stage.name} copies ${source}`).toBe(false);
      }
      for (const run of stage.runs) expect(run).not.toMatch(/@spire-csi\/dev\b|--workspaces\b/);
    }
  });

  it('installs the runtime node_modules from the driver workspace alone, without dev dependencies', () => {
    const modules = runtime.copies.filter((c) => c.from !== null && c.sources.some((s) => s.endsWith('node_modules')));
    expect(modules.length).toBeGreaterThan(0);
    for (const copy of modules) {
      const installs = stageNamed(copy.from!).runs.filter((r) => /\bnpm ci\b/.test(r));
      expect(installs.length).toBeGreaterThan(0);
      for (const run of installs) {
        expect(run).toContain('--omit=dev');
        expect(run).toContain('--workspace @spire-csi/driver');
      }
    }
  });

  it("leaves the dev tools' dependencies out of what the driver installs", () => {
    const closure = productionClosure('driver');
    expect(closure.has('@grpc/grpc-js')).toBe(true);
    expect(closure.has('@spire-csi/sdk')).toBe(true);
    for (const devOnly of ['@spire-csi/dev', '@peculiar/x509', 'reflect-metadata']) expect(closure.has(devOnly), devOnly).toBe(false);
  });

  it('has the .dockerignore deploy/README.md relies on', () => {
    for (const path of ['.git', 'node_modules', 'sdk/node_modules', 'driver/dist', 'sdk/dist', 'coverage', 'bench/results', 'npm-debug.log']) {
      expect(dockerIgnored(path), path).toBe(true);
    }
    for (const path of ['package.json', 'package-lock.json', '.npmrc', 'proto', 'sdk/src', 'driver/src', 'driver/bin']) {
      expect(dockerIgnored(path), path).toBe(false);
    }
  });
});
