/*
 * Just enough HCL to read the SPIRE agent configuration shown in deploy/broker.md: blocks
 * (`name {`, `WorkloadAttestor "k8s" {`), string attributes and the `brokers = [ {...} ]` lists,
 * each taken at the top level of the block it is asked of. Comments are dropped first.
 */

/** The ```hcl fenced blocks of a Markdown text. */
export function hclBlocksOf(markdown: string): string[] {
  return [...markdown.matchAll(/```hcl\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

function stripComments(text: string): string {
  // No `#` appears inside the strings these snippets hold (paths, SPIFFE IDs, type URLs).
  return text.replace(/#[^\n]*/g, '');
}

/** The index just past the bracket that closes the one at `open`. */
function closing(text: string, open: number): number {
  const pairs: Record<string, string> = { '{': '}', '[': ']' };
  const stack: string[] = [];
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '"' && text[i - 1] !== '\\') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c in pairs) stack.push(pairs[c]!);
    else if (c === '}' || c === ']') {
      if (stack.pop() !== c) throw new Error(`unbalanced "${c}" at offset ${i}`);
      if (stack.length === 0) return i + 1;
    }
  }
  throw new Error(`unclosed bracket at offset ${open}`);
}

/** `text` with every nested {...} and [...] replaced by spaces, so only top-level tokens remain. */
function topLevel(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '{' || c === '[') {
      const end = closing(text, i);
      out += ' '.repeat(end - i);
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** The body of the top-level block `header {`, e.g. `broker` or `WorkloadAttestor "k8s"`. */
export function hclBlock(text: string, header: string): string {
  const clean = stripComments(text);
  const escaped = header.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\s+/g, '\\s+');
  const opensBlock = new RegExp(`^\\s*${escaped}\\s*$`);
  for (let i = clean.indexOf('{'); i !== -1; i = clean.indexOf('{', i + 1)) {
    if (topLevelAt(clean, i) && opensBlock.test(clean.slice(lineStart(clean, i), i))) {
      return clean.slice(i + 1, closing(clean, i) - 1);
    }
  }
  throw new Error(`no top-level block "${header} {" in:\n${text}`);
}

function lineStart(text: string, index: number): number {
  return text.lastIndexOf('\n', index) + 1;
}

/** Whether the bracket at `index` is at depth 0 of `text`. */
function topLevelAt(text: string, index: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < index; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '"' && text[i - 1] !== '\\') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return depth === 0;
}

/** The top-level string attribute `key = "value"` of a block body; undefined when absent. */
export function hclString(body: string, key: string): string | undefined {
  const flat = topLevel(stripComments(body));
  const found = [...flat.matchAll(new RegExp(`(?:^|\\s)${key}\\s*=\\s*"([^"]*)"`, 'g'))].map((m) => m[1]!);
  if (found.length > 1) throw new Error(`${key} is set ${found.length} times`);
  return found[0];
}

/** The objects of the top-level list attribute `key = [ {...}, ... ]`, each as its body text. */
export function hclObjectList(body: string, key: string): string[] {
  const clean = stripComments(body);
  const flat = topLevel(clean);
  // `=` and not `=\s*`: the blanked-out list is whitespace too.
  const match = new RegExp(`(?:^|\\s)${key}\\s*=`, 'g').exec(flat);
  if (match === null) throw new Error(`no list ${key} = [...]`);
  let open = match.index + match[0].length;
  while (/\s/.test(clean[open] ?? '')) open++;
  if (clean[open] !== '[') throw new Error(`${key} is not a list`);
  const list = clean.slice(open + 1, closing(clean, open) - 1);
  const objects: string[] = [];
  for (let i = list.indexOf('{'); i !== -1; ) {
    const end = closing(list, i);
    objects.push(list.slice(i + 1, end - 1));
    i = list.indexOf('{', end);
  }
  return objects;
}
