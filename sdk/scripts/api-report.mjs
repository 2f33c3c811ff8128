#!/usr/bin/env node
/**
 * The public API of @spire-csi/sdk as reviewable text: one `sdk/api/<subpath>.api.md` per public
 * subpath of package.json `exports`, listing every export with its declaration as the built
 * `.d.ts` states it (doc comments left out). A change to the public API changes these files, so it
 * shows up in review; test/sdk/package-shape.test.ts fails while they are out of date.
 *
 * It also lists exports, and public members of exported classes and interfaces, that have no doc
 * comment: every public name is documented.
 *
 *   node sdk/scripts/api-report.mjs --check    compare with sdk/api/ (exit 1 on a difference)
 *   node sdk/scripts/api-report.mjs --update   rewrite sdk/api/ (after `npm run build`)
 *
 * `@spire-csi/sdk/internal` is left out: it is unstable by design and for the driver only.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const SDK_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const API_DIR = join(SDK_DIR, 'api');
export const UPDATE_COMMAND = 'npm run api:update';
const UNSTABLE = new Set(['./internal']);

/** Public subpaths (`.`, `./x509`, ...) with their ESM types file, from package.json `exports`. */
export function publicSubpaths(sdkDir = SDK_DIR) {
  const pkg = JSON.parse(readFileSync(join(sdkDir, 'package.json'), 'utf8'));
  return Object.entries(pkg.exports)
    .filter(([subpath, target]) => typeof target === 'object' && !UNSTABLE.has(subpath))
    .map(([subpath, target]) => ({ subpath, types: join(sdkDir, target.import.types) }));
}

/** `index` for the root, else the subpath's name: the report's file name without `.api.md`. */
export function reportName(subpath) {
  return subpath === '.' ? 'index' : subpath.slice(2);
}

function hasDoc(symbol, checker) {
  return symbol.getDocumentationComment(checker).length > 0 || symbol.getJsDocTags(checker).some((tag) => tag.name === 'inheritDoc');
}

function isPublicMember(declaration) {
  const flags = ts.getCombinedModifierFlags(declaration);
  if (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return false;
  const name = declaration.name;
  return !(name && ts.isPrivateIdentifier(name));
}

/** Public members of a class or interface that have no doc comment, as `Name.member`. */
function undocumentedMembers(exportName, target, checker) {
  if (!(target.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface))) return [];
  const out = [];
  const members = [...(target.members?.values() ?? []), ...(target.exports?.values() ?? [])];
  for (const member of members) {
    const declarations = member.declarations ?? [];
    if (declarations.length === 0 || !declarations.every(isPublicMember)) continue;
    if (member.flags & ts.SymbolFlags.TypeParameter || member.escapedName === 'prototype') continue;
    // Constructors count once: any documented overload documents them.
    if (!hasDoc(member, checker)) out.push(`${exportName}.${member.escapedName === '__constructor' ? 'constructor' : member.name}`);
  }
  return out;
}

/**
 * Private members are implementation: a new private field is not an API change. A private
 * constructor stays, since it says the class cannot be constructed.
 */
function withoutPrivateMembers(node) {
  const members = node.members.filter((member) => ts.isConstructorDeclaration(member) || isPublicMember(member));
  return ts.factory.updateClassDeclaration(node, node.modifiers, node.name, node.typeParameters, node.heritageClauses, members);
}

/** Printed without doc comments and with one statement per declaration, so only the API shows. */
function printDeclaration(declaration, printer) {
  const sourceFile = declaration.getSourceFile();
  // A variable's declaration is printed as its whole statement (`declare const x: T;`).
  let node = ts.isVariableDeclaration(declaration) ? declaration.parent.parent : declaration;
  if (ts.isClassDeclaration(node)) node = withoutPrivateMembers(node);
  return printer.printNode(ts.EmitHint.Unspecified, node, sourceFile);
}

/**
 * The report text of every public subpath, and the undocumented names. Reads the built `.d.ts`
 * files (run `npm run build` first).
 */
export function buildApiReports(sdkDir = SDK_DIR) {
  const subpaths = publicSubpaths(sdkDir);
  for (const { types } of subpaths) {
    if (!existsSync(types)) throw new Error(`api-report: ${types} is missing; run \`npm run build\` first`);
  }
  const program = ts.createProgram(
    subpaths.map(({ types }) => types),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, skipLibCheck: true, types: ['node'], noEmit: true },
  );
  const checker = program.getTypeChecker();
  const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });
  const reports = new Map();
  const undocumented = [];
  for (const { subpath, types } of subpaths) {
    const sourceFile = program.getSourceFile(types);
    const moduleSymbol = sourceFile && checker.getSymbolAtLocation(sourceFile);
    if (!moduleSymbol) throw new Error(`api-report: cannot read the exports of ${types}`);
    const specifier = subpath === '.' ? '@spire-csi/sdk' : `@spire-csi/sdk/${subpath.slice(2)}`;
    const lines = [
      `# API report: \`${specifier}\``,
      '',
      `Generated from the built declarations by \`${UPDATE_COMMAND}\`; do not edit. Every export of the`,
      'subpath with its declaration (doc comments left out). A change here is a change of the public API.',
      '',
      '```ts',
    ];
    const exported = checker.getExportsOfModule(moduleSymbol).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const symbol of exported) {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      const declarations = target.declarations ?? [];
      lines.push(`// ${symbol.name}${target.name !== symbol.name && target.name !== 'default' ? ` (declared as ${target.name})` : ''}`);
      for (const declaration of declarations) lines.push(printDeclaration(declaration, printer));
      lines.push('');
      if (!hasDoc(target, checker)) undocumented.push(`${specifier}: ${symbol.name}`);
      for (const member of undocumentedMembers(symbol.name, target, checker)) undocumented.push(`${specifier}: ${member}`);
    }
    if (lines[lines.length - 1] === '') lines.pop();
    lines.push('```', '');
    reports.set(reportName(subpath), lines.join('\n'));
  }
  return { reports, undocumented: [...new Set(undocumented)] };
}

/** Names of reports that differ from (or are missing in, or are extra in) `apiDir`. */
export function staleReports(reports, apiDir = API_DIR) {
  const stale = [];
  for (const [name, text] of reports) {
    const file = join(apiDir, `${name}.api.md`);
    if (!existsSync(file) || readFileSync(file, 'utf8') !== text) stale.push(`${name}.api.md`);
  }
  const committed = existsSync(apiDir) ? readdirSync(apiDir).filter((file) => file.endsWith('.api.md')) : [];
  for (const file of committed) if (!reports.has(file.slice(0, -'.api.md'.length))) stale.push(`${file} (no such subpath any more)`);
  return stale;
}

function main(argv) {
  const mode = argv[0];
  if (mode !== '--check' && mode !== '--update') {
    process.stderr.write('usage: api-report.mjs --check | --update\n');
    return 2;
  }
  const { reports, undocumented } = buildApiReports();
  if (mode === '--update') {
    rmSync(API_DIR, { recursive: true, force: true });
    mkdirSync(API_DIR, { recursive: true });
    for (const [name, text] of reports) writeFileSync(join(API_DIR, `${name}.api.md`), text);
    process.stdout.write(`api-report: wrote ${reports.size} reports to ${API_DIR}\n`);
  } else {
    const stale = staleReports(reports);
    if (stale.length > 0) {
      process.stderr.write(`api-report: the public API differs from sdk/api/ (${stale.join(', ')}).\nIf the change is intended, run \`${UPDATE_COMMAND}\` and commit sdk/api/.\n`);
      return 1;
    }
    process.stdout.write('api-report: sdk/api/ is up to date\n');
  }
  if (undocumented.length > 0) {
    process.stderr.write(`api-report: public names without a doc comment (add one; TSDoc on every public export):\n  ${undocumented.join('\n  ')}\n`);
    return 1;
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
