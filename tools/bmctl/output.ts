/** How results are printed: aligned text for people, proto JSON for scripts. */
export type OutputFormat = 'table' | 'json';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'json'];

/** One column of a list table: a header such as `RAM_MB` and how to render a row's cell. */
export interface Column<T> {
  header: string;
  value: (item: T) => string;
}

/** How one kind of message is printed in each format. */
export interface View<T> {
  /** Columns of `list` output. */
  columns: Column<T>[];
  /** Rows of `show` output: proto field name and rendered value. */
  fields: (item: T) => [string, string][];
  /** The message as proto JSON with snake_case names. */
  json: (item: T) => Record<string, unknown>;
}

/** Empty cells print as `-` so columns stay readable and splittable by whitespace. */
function cell(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat === '' ? '-' : flat;
}

/** Left-aligned columns separated by two spaces, no trailing blanks; one line per row. */
export function renderTable(headers: string[], rows: string[][]): string {
  const cells = [headers, ...rows.map((row) => row.map(cell))];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((text, i) => (i === row.length - 1 ? text : text.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** Prints results in the format the operator chose. */
export class Printer {
  readonly format: OutputFormat;
  readonly #write: (text: string) => void;

  constructor(format: OutputFormat, write: (text: string) => void) {
    this.format = format;
    this.#write = write;
  }

  /** One message: a FIELD/VALUE table, or a JSON object. */
  one<T>(item: T, view: View<T>): void {
    if (this.format === 'json') {
      this.#write(`${JSON.stringify(view.json(item), null, 2)}\n`);
    } else {
      this.#write(renderTable(['FIELD', 'VALUE'], view.fields(item)));
    }
  }

  /** A list: one row per message, or a JSON array. */
  many<T>(items: T[], view: View<T>): void {
    if (this.format === 'json') {
      this.#write(`${JSON.stringify(items.map(view.json), null, 2)}\n`);
    } else {
      this.#write(
        renderTable(
          view.columns.map((c) => c.header),
          items.map((item) => view.columns.map((c) => c.value(item))),
        ),
      );
    }
  }

  /** Output with a layout of its own, e.g. a filter trace: `text` (whole lines) for people, `json` for scripts. */
  report(rendered: { text: () => string; json: () => unknown }): void {
    this.#write(this.format === 'json' ? `${JSON.stringify(rendered.json(), null, 2)}\n` : rendered.text());
  }

  /** A confirmation for people, e.g. `switch tor1 deleted`; scripts get nothing (the RPC returned Empty). */
  done(text: string): void {
    if (this.format === 'table') this.#write(`${text}\n`);
  }
}

export function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

/** RFC 3339 in UTC to the second, e.g. `2026-11-25T08:39:10Z`; empty when unset. */
export function formatTime(time: Date | undefined): string {
  return time === undefined ? '' : time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `{a: '1', b: '2'}` → `a=1, b=2`, sorted by key. */
export function formatMap(map: Record<string, string>): string {
  return Object.keys(map)
    .sort()
    .map((key) => `${key}=${map[key]}`)
    .join(', ');
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * A ts-proto message as proto JSON with the .proto (snake_case) field names,
 * every field present (defaults included, so `jq .maintenance` is never
 * null), timestamps as RFC 3339, enums by name via `enums`, and map keys
 * untouched. `omit` drops input-only fields such as passwords.
 */
export function toProtoJson(
  message: object,
  opts: { omit?: readonly string[]; enums?: Record<string, (value: number) => string> } = {},
): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message)) {
    if (opts.omit?.includes(key)) continue;
    const toName = opts.enums?.[key];
    json[snakeCase(key)] =
      toName !== undefined && typeof value === 'number'
        ? toName(value)
        : value instanceof Date
          ? value.toISOString()
          : (value ?? null);
  }
  return json;
}
