import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { ProvisionState } from '../../build/gen/ingot/v1/inventory.ts';
import { BmctlError, UsageError } from './errors.ts';

/**
 * Commander argument parser for counts and sizes (cpus, MB, GB): a whole
 * number without sign, unit or exponent.
 */
export function parseWholeNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError('expected a whole number such as 16');
  }
  return n;
}

/** Commander parser for options given several times, e.g. `--spec a=1 --spec b=2`. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Splits `key=value` at the first `=`; `what` names the argument in the error. */
export function parseKeyValue(text: string, what: string): [string, string] {
  const at = text.indexOf('=');
  const key = at < 0 ? '' : text.slice(0, at);
  if (key === '') throw new UsageError(`${what} "${text}" must look like key=value`);
  return [key, text.slice(at + 1)];
}

/** `['a=1', 'b=x=y']` → `{a: '1', b: 'x=y'}`; a later duplicate wins. */
export function parseKeyValues(texts: readonly string[], what: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const text of texts) {
    const [key, value] = parseKeyValue(text, what);
    map[key] = value;
  }
  return map;
}

/**
 * Nova's aggregate-set-metadata arguments: `key=value` sets (`key=` sets the
 * empty string), a bare `key` unsets. When a key appears twice the last
 * mention wins, so `a=1 a` unsets `a`.
 */
export function parseMetadataChanges(texts: readonly string[]): {
  set: Record<string, string>;
  unset: string[];
} {
  const set = new Map<string, string>();
  const unset = new Set<string>();
  for (const text of texts) {
    const at = text.indexOf('=');
    const key = at < 0 ? text : text.slice(0, at);
    if (key === '')
      throw new UsageError(`metadata "${text}" needs a key: key=value sets it, key alone unsets it`);
    if (at < 0) {
      set.delete(key);
      unset.add(key);
    } else {
      unset.delete(key);
      set.set(key, text.slice(at + 1));
    }
  }
  return { set: Object.fromEntries(set), unset: [...unset] };
}

const STATE_PREFIX = 'PROVISION_STATE_';

/** PROVISION_STATE_WAIT_CALL_BACK → `wait-call-back`, the form tables show and `--state` takes. */
export function provisionStateName(state: ProvisionState): string {
  const entry = Object.entries(ProvisionState).find(([, value]) => value === state);
  if (entry === undefined || state === ProvisionState.UNRECOGNIZED) return `unknown(${state})`;
  return entry[0].slice(STATE_PREFIX.length).toLowerCase().replaceAll('_', '-');
}

/** Commander parser for `--state`: `available`, `wait-call-back`, `WAIT_CALL_BACK` or the full enum name. */
export function parseProvisionState(value: string): ProvisionState {
  const wanted = value.trim().toUpperCase().replaceAll('-', '_');
  const name = wanted.startsWith(STATE_PREFIX) ? wanted : `${STATE_PREFIX}${wanted}`;
  const state = (ProvisionState as Record<string, ProvisionState>)[name];
  if (state === undefined || state === ProvisionState.UNRECOGNIZED || state === 0) {
    const known = Object.values(ProvisionState)
      .filter((s) => s > 0)
      .map(provisionStateName);
    throw new InvalidArgumentError(`expected one of ${known.join(', ')}`);
  }
  return state;
}

/**
 * A field the seed's commands take positionally and that also has a named
 * flag: returns whichever was given, undefined when neither was, and fails
 * when both were so a typo cannot silently pick one.
 */
export function eitherOf<T>(
  positional: T | undefined,
  flag: T | undefined,
  names: { argument: string; flag: string },
): T | undefined {
  if (positional !== undefined && flag !== undefined) {
    throw new UsageError(`give ${names.argument} either as an argument or with ${names.flag}, not both`);
  }
  return positional ?? flag;
}

/** Where a command reads secrets from; tests pass their own stdin. */
export interface SecretSource {
  readStdin: () => Promise<string>;
  cwd: string;
}

/** Drops one trailing newline, as `echo` and editors add it. */
function chomp(text: string): string {
  return text.replace(/\r?\n$/, '');
}

/**
 * A password given positionally: `-` reads it from stdin (keeps it out of
 * `ps` and shell history), anything else is the password itself.
 */
export async function passwordArgument(
  value: string | undefined,
  source: SecretSource,
): Promise<string | undefined> {
  if (value !== '-') return value;
  return chomp(await source.readStdin());
}

/** A password named by `--password-file PATH`; `-` reads stdin. */
export async function passwordFile(
  path: string | undefined,
  source: SecretSource,
): Promise<string | undefined> {
  if (path === undefined) return undefined;
  if (path === '-') return chomp(await source.readStdin());
  try {
    return chomp(await readFile(resolve(source.cwd, path), 'utf8'));
  } catch (err) {
    throw new BmctlError(`cannot read the password file ${path}: ${(err as Error).message}`, { cause: err });
  }
}
