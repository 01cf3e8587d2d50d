/**
 * The small part of XML that NETCONF needs: elements, attributes, text,
 * entities, comments, processing instructions and CDATA. Namespace prefixes
 * are kept but lookups go by local name (Junos mixes `junos:` attributes
 * and default namespaces freely). DOCTYPE is refused: a switch has no
 * business sending one, and refusing it rules out entity expansion attacks.
 */

export interface XmlElement {
  /** Local name, without any `prefix:`. */
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
}

export type XmlNode = XmlElement | string;

export class XmlSyntaxError extends Error {}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith('#x')) return String.fromCodePoint(Number.parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(Number.parseInt(ref.slice(1), 10));
    const named = ENTITIES[ref];
    if (named === undefined) throw new XmlSyntaxError(`unknown entity ${whole}`);
    return named;
  });
}

const localName = (qname: string): string => qname.slice(qname.indexOf(':') + 1);

/** Parses one document and returns its root element. */
export function parseXml(text: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const fail = (what: string): never => {
    throw new XmlSyntaxError(`${what} at offset ${i}: ${JSON.stringify(text.slice(i, i + 40))}`);
  };
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const end = lt === -1 ? text.length : lt;
    if (end > i) {
      const raw = text.slice(i, end);
      const parent = stack.at(-1);
      if (parent) parent.children.push(decodeEntities(raw));
      else if (raw.trim() !== '') fail('text outside the root element');
      i = end;
      continue;
    }
    if (text.startsWith('<!--', i)) {
      const close = text.indexOf('-->', i + 4);
      if (close === -1) fail('unterminated comment');
      i = close + 3;
    } else if (text.startsWith('<?', i)) {
      const close = text.indexOf('?>', i + 2);
      if (close === -1) fail('unterminated processing instruction');
      i = close + 2;
    } else if (text.startsWith('<![CDATA[', i)) {
      const close = text.indexOf(']]>', i + 9);
      if (close === -1) fail('unterminated CDATA section');
      const parent = stack.at(-1) ?? fail('CDATA outside the root element');
      parent.children.push(text.slice(i + 9, close));
      i = close + 3;
    } else if (text.startsWith('<!', i)) {
      fail('DOCTYPE and other declarations are not accepted');
    } else if (text.startsWith('</', i)) {
      const close = text.indexOf('>', i);
      if (close === -1) fail('unterminated end tag');
      const name = localName(text.slice(i + 2, close).trim());
      const open = stack.pop();
      if (!open || open.name !== name) fail(`end tag </${name}> does not match <${open?.name ?? ''}>`);
      i = close + 1;
    } else {
      const tag = /^<([A-Za-z_][\w.:-]*)/.exec(text.slice(i, i + 256));
      if (!tag?.[1]) return fail('bad start tag');
      const element: XmlElement = { name: localName(tag[1]), attrs: {}, children: [] };
      i += tag[0].length;
      const attr = /\s*([A-Za-z_][\w.:-]*)\s*=\s*("[^"]*"|'[^']*')|\s*(\/?)>/y;
      for (;;) {
        attr.lastIndex = i;
        const m = attr.exec(text);
        if (!m) return fail('bad attribute or unterminated start tag');
        i = attr.lastIndex;
        if (m[1] !== undefined && m[2] !== undefined) {
          element.attrs[m[1]] = decodeEntities(m[2].slice(1, -1));
          continue;
        }
        const parent = stack.at(-1);
        if (parent) parent.children.push(element);
        else if (root) fail('a second root element');
        else root = element;
        if (m[3] !== '/') stack.push(element);
        break;
      }
    }
  }
  if (stack.length > 0) fail(`<${stack.at(-1)?.name}> is not closed`);
  if (!root) throw new XmlSyntaxError('no root element');
  return root;
}

/** Escapes text and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );
}

/** The element children of `el`, optionally only those named `name`. */
export function elements(el: XmlElement | undefined, name?: string): XmlElement[] {
  if (!el) return [];
  return el.children.filter((c): c is XmlElement => typeof c !== 'string' && (!name || c.name === name));
}

/** The first child element named `name`. */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return elements(el, name)[0];
}

/** Follows a path of child names: `descend(reply, 'data', 'configuration')`. */
export function descend(el: XmlElement | undefined, ...path: string[]): XmlElement | undefined {
  let at = el;
  for (const name of path) at = child(at, name);
  return at;
}

/** The element's text content, trimmed (Junos pads error messages with newlines). */
export function textOf(el: XmlElement | undefined): string {
  if (!el) return '';
  return el.children
    .map((c) => (typeof c === 'string' ? c : textOf(c)))
    .join('')
    .trim();
}

/** Serialises an element tree (for the test switch's replies and for logs). */
export function serializeXml(el: XmlElement): string {
  const attrs = Object.entries(el.attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(v)}"`)
    .join('');
  if (el.children.length === 0) return `<${el.name}${attrs}/>`;
  const inner = el.children.map((c) => (typeof c === 'string' ? escapeXml(c) : serializeXml(c))).join('');
  return `<${el.name}${attrs}>${inner}</${el.name}>`;
}

/**
 * Builds XML text: `x('lock', {}, x('target', {}, x('candidate')))`. Children
 * that are strings produced by `x` are inserted as they are; use `t()` for text.
 */
export function x(name: string, attrs: Record<string, string> = {}, ...children: string[]): string {
  const a = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(v)}"`)
    .join('');
  return children.length === 0 ? `<${name}${a}/>` : `<${name}${a}>${children.join('')}</${name}>`;
}

/** Escaped text content for `x()`. */
export const t = (s: string | number): string => escapeXml(String(s));
