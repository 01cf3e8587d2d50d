import type { Violations } from './violations.ts';

/** A parser's answer for an unacceptable value: the hint shown to the caller. */
export interface Invalid {
  invalid: string;
}

/** How one field of a resource is read from a request message. */
export interface FieldSpec {
  /** Proto (snake_case) name, used in field violations and update masks. */
  name: string;
  /** Property of the generated message (camelCase). */
  key: string;
  /** Must be given on create and can never be cleared. */
  required?: boolean;
  /** False for fields fixed at creation. @default true */
  updatable?: boolean;
  parse: (value: unknown) => unknown;
}

const isInvalid = (value: unknown): value is Invalid =>
  typeof value === 'object' && value !== null && 'invalid' in value;

/** Proto3 has no presence for scalars: the zero value means "not given". */
function isUnset(value: unknown): boolean {
  if (value === undefined || value === null || value === '' || value === 0 || value === false) return true;
  return typeof value === 'object' && !(value instanceof Date) && Object.keys(value).length === 0;
}

/**
 * Reads the fields of `message` that a Create (no mask) or an Update (mask
 * paths relative to the resource) touches, parsing and normalising each and
 * recording every violation under `prefix`. Returns only the touched fields.
 */
export function readFields(
  specs: readonly FieldSpec[],
  message: Record<string, unknown> | undefined,
  prefix: string,
  violations: Violations,
  mask?: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!message) {
    violations.add(prefix, 'is required');
    return out;
  }
  const byName = new Map(specs.map((s) => [s.name, s]));
  let touched: FieldSpec[];
  if (mask === undefined) {
    touched = [...specs];
  } else {
    touched = [];
    if (mask.length === 0) violations.add('update_mask', 'must name at least one field');
    for (const rawPath of mask) {
      const path = rawPath.startsWith(`${prefix}.`) ? rawPath.slice(prefix.length + 1) : rawPath;
      const spec = byName.get(path);
      if (!spec)
        violations.add('update_mask', `"${rawPath}" is not a field of ${prefix} that can be updated`);
      else if (spec.updatable === false) violations.add('update_mask', `"${rawPath}" cannot be changed`);
      else touched.push(spec);
    }
  }
  for (const spec of touched) {
    const value = message[spec.key];
    if (isUnset(value)) {
      if (spec.required) violations.add(`${prefix}.${spec.name}`, 'is required');
      else if (mask !== undefined) out[spec.key] = spec.parse(value);
      continue;
    }
    const parsed = spec.parse(value);
    if (isInvalid(parsed)) violations.add(`${prefix}.${spec.name}`, parsed.invalid);
    else out[spec.key] = parsed;
  }
  return out;
}

/** Builds a string parser from a normaliser that answers undefined on bad input. */
export function normalized(fn: (s: string) => string | undefined, hint: string): (v: unknown) => unknown {
  return (v) => {
    if (v === '' || v === undefined) return '';
    const out = typeof v === 'string' ? fn(v) : undefined;
    return out === undefined ? { invalid: hint } : out;
  };
}

export function text(maxLength: number): (v: unknown) => unknown {
  return (v) => {
    const s = typeof v === 'string' ? v.trim() : '';
    if (s.length > maxLength) return { invalid: `must be at most ${maxLength} characters` };
    if ([...s].some((c) => c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f)))
      return { invalid: 'must not contain control characters' };
    return s;
  };
}

/** Whole number in [1, max]; the zero value (not given) parses to 0 for optional fields. */
export function positiveInt(max: number, unit: string): (v: unknown) => unknown {
  return (v) => {
    if (v === 0 || v === undefined) return 0;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      return { invalid: `must be a whole number of ${unit} from 1 to ${max}` };
    }
    return v;
  };
}

export function oneOf(values: readonly string[]): (v: unknown) => unknown {
  return (v) => {
    const s = typeof v === 'string' ? v.trim().toLowerCase() : '';
    return values.includes(s) ? s : { invalid: `must be one of ${values.join(', ')}` };
  };
}

export const bool = (v: unknown): unknown => v === true;

/** A string map with bounded keys and values (flavor extra specs, aggregate metadata). */
export function stringMap(v: unknown): unknown {
  const entries = Object.entries((v ?? {}) as Record<string, unknown>);
  if (entries.length > 100) return { invalid: 'must have at most 100 entries' };
  for (const [key, value] of entries) {
    if (!/^[A-Za-z0-9_.:/-]{1,255}$/.test(key)) {
      return { invalid: `key "${key.slice(0, 40)}" must be 1-255 characters of letters, digits, _ . : / -` };
    }
    if (typeof value !== 'string' || value.length > 255)
      return { invalid: `value of "${key}" must be at most 255 characters` };
  }
  return Object.fromEntries(entries);
}
