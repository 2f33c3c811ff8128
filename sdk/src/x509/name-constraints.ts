/**
 * RFC 5280 §4.2.1.10 name constraints, for the name forms SPIFFE uses (URI, per X509-SVID.md
 * §4.2, and DNS). A CA that constrains any other form (IP, directory name, email, ...) fails
 * closed: ignoring a critical constraint would accept names its issuer meant to forbid.
 */
import type { X509Certificate } from 'node:crypto';
import { DerTag, derChildren, derContent, readDer, type DerNode } from './der.js';
import { X509Error } from './errors.js';
import { messageOf } from '../internal/error-text.js';
import { OID, dnsSansOf, extensionsOf, uriSansOf } from './extensions.js';
import { describeCert, type Fail } from './svid-rules.js';

interface Subtrees {
  readonly uri: string[];
  readonly dns: string[];
}

export interface NameConstraints {
  readonly permitted: Subtrees | undefined;
  readonly excluded: Subtrees | undefined;
}

const PERMITTED = 0xa0;
const EXCLUDED = 0xa1;
const GENERAL_NAME_DNS = 0x82;
const GENERAL_NAME_URI = 0x86;

export function nameConstraintsOf(cert: X509Certificate): NameConstraints | undefined {
  const ext = extensionsOf(cert).get(OID.nameConstraints);
  if (!ext) return undefined;
  const node = readDer(ext.value);
  if (node.tag !== DerTag.SEQUENCE) throw new X509Error('der', 'name constraints must be a SEQUENCE');
  let permitted: Subtrees | undefined;
  let excluded: Subtrees | undefined;
  for (const child of derChildren(node)) {
    if (child.tag === PERMITTED) permitted = parseSubtrees(child);
    else if (child.tag === EXCLUDED) excluded = parseSubtrees(child);
    else throw new X509Error('der', 'unexpected field in name constraints');
  }
  return { permitted, excluded };
}

function parseSubtrees(node: DerNode): Subtrees {
  const out: Subtrees = { uri: [], dns: [] };
  for (const subtree of derChildren(node)) {
    if (subtree.tag !== DerTag.SEQUENCE) throw new X509Error('der', 'GeneralSubtree must be a SEQUENCE');
    const [base, ...bounds] = derChildren(subtree);
    if (!base) throw new X509Error('der', 'GeneralSubtree has no base');
    // minimum must be 0 and maximum absent (RFC 5280); anything else is a form we do not implement.
    if (bounds.length > 0) throw new X509Error('der', 'name constraint minimum/maximum are not supported');
    const value = Buffer.from(derContent(base)).toString('latin1').toLowerCase();
    if (base.tag === GENERAL_NAME_URI) out.uri.push(value);
    else if (base.tag === GENERAL_NAME_DNS) out.dns.push(value);
    else throw new X509Error('der', `unsupported name constraint type (tag 0x${base.tag.toString(16)})`);
  }
  return out;
}

/** URI constraints apply to the host; a leading '.' means "any subdomain of". */
function uriHostMatches(host: string, constraint: string): boolean {
  if (constraint.startsWith('.')) return host.endsWith(constraint);
  return host === constraint;
}

/** DNS constraints cover the name itself and every subdomain; a leading '.' only subdomains. */
function dnsMatches(name: string, constraint: string): boolean {
  if (constraint === '') return true;
  if (constraint.startsWith('.')) return name.endsWith(constraint);
  return name === constraint || name.endsWith(`.${constraint}`);
}

function uriHost(uri: string): string | undefined {
  const match = /^[a-z][a-z0-9+.-]*:\/\/(?:[^/?#@]*@)?([^/?#:]*)/i.exec(uri);
  return match?.[1] === undefined || match[1] === '' ? undefined : match[1].toLowerCase();
}

function checkNames(
  kind: string,
  names: readonly string[],
  permitted: readonly string[] | undefined,
  excluded: readonly string[] | undefined,
  matches: (name: string, constraint: string) => boolean,
): string | undefined {
  for (const name of names) {
    if (permitted && permitted.length > 0 && !permitted.some((c) => matches(name, c))) {
      return `${kind} ${JSON.stringify(name)} is outside the permitted name constraints`;
    }
    if (excluded?.some((c) => matches(name, c))) return `${kind} ${JSON.stringify(name)} is excluded by name constraints`;
  }
  return undefined;
}

/**
 * Applies every CA's constraints in `path` (leaf first, anchor last) to the certificates below
 * it. Self-issued intermediates are exempt, as RFC 5280 §6.1.3 prescribes.
 */
export function checkNameConstraints(path: readonly X509Certificate[], fail: Fail): void {
  for (let i = 1; i < path.length; i++) {
    const ca = path[i]!;
    let constraints: NameConstraints | undefined;
    try {
      constraints = nameConstraintsOf(ca);
    } catch (err) {
      throw fail(`certificate ${describeCert(ca)} has name constraints this verifier cannot enforce: ${messageOf(err)}`, err);
    }
    if (!constraints) continue;
    for (let j = 0; j < i; j++) {
      const cert = path[j]!;
      if (j > 0 && cert.subject === cert.issuer) continue;
      const hosts: string[] = [];
      for (const uri of uriSansOf(cert)) {
        const host = uriHost(uri);
        if (host === undefined) throw fail(`URI SAN ${JSON.stringify(uri)} has no host to check against name constraints`);
        hosts.push(host);
      }
      const dns = dnsSansOf(cert).map((name) => name.toLowerCase());
      const problem =
        checkNames('URI host', hosts, constraints.permitted?.uri, constraints.excluded?.uri, uriHostMatches) ??
        checkNames('DNS name', dns, constraints.permitted?.dns, constraints.excluded?.dns, dnsMatches);
      if (problem) throw fail(`certificate ${describeCert(cert)}: ${problem} of ${describeCert(ca)}`);
    }
  }
}
