import { isIP } from 'node:net';

/**
 * Parsers for the identifiers operators type. Each returns the normalised
 * value or `undefined` when the input is not acceptable; callers turn that
 * into a field violation with the matching `*_HINT`.
 */

export const MAC_HINT = 'must be a unicast MAC address like 52:54:00:12:34:56';

/** Accepts `aa:bb:..`, `aa-bb-..`, `aabb.ccdd.eeff` and bare hex; returns lower-case colon form. */
export function normalizeMac(input: string): string | undefined {
  const hex = input.trim().toLowerCase();
  let digits: string;
  if (/^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/.test(hex)) {
    if (new Set(hex.replace(/[0-9a-f]/g, '')).size !== 1) return undefined;
    digits = hex.replace(/[:-]/g, '');
  } else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/.test(hex)) {
    digits = hex.replace(/\./g, '');
  } else if (/^[0-9a-f]{12}$/.test(hex)) {
    digits = hex;
  } else {
    return undefined;
  }
  const firstOctet = Number.parseInt(digits.slice(0, 2), 16);
  if ((firstOctet & 1) === 1 || digits === '000000000000') return undefined;
  return digits.match(/../g)?.join(':');
}

export const IP_HINT = 'must be an IPv4 or IPv6 address like 10.0.0.5';

export function normalizeIp(input: string): string | undefined {
  const ip = input.trim().toLowerCase();
  return isIP(ip) === 0 || ip.includes('%') ? undefined : ip;
}

export interface HostPort {
  host: string;
  /** Absent when the address named none; drivers apply their protocol's default. */
  port?: number;
}

export const HOST_PORT_HINT = 'must be host or host:port (IPv6 as [addr]:port), port 1-65535';

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Parses `host`, `host:port`, `[v6]` or `[v6]:port`. */
export function parseHostPort(input: string): HostPort | undefined {
  const text = input.trim().toLowerCase();
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1] ?? '';
    portText = bracketed[2];
    if (isIP(host) !== 6) return undefined;
  } else if (isIP(text) === 6) {
    host = text;
  } else {
    const parts = text.split(':');
    if (parts.length > 2) return undefined;
    host = parts[0] ?? '';
    portText = parts[1];
    // A numeric top-level label would make `256.1.1.1` a host name (RFC 1123 §2.1 rules that out).
    if (isIP(host) !== 4 && (!HOSTNAME.test(host) || /(^|\.)\d+$/.test(host))) return undefined;
  }
  if (portText === undefined) return { host };
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) return undefined;
  return { host, port };
}

export const BMC_ADDRESS_HINT = 'must be host, host:port or ipmi://host:port (IPMI port defaults to 623)';

/** A BMC address with its scheme; only IPMI exists today. */
export function normalizeBmcAddress(input: string): string | undefined {
  const text = input.trim();
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(text);
  if (match && match[1]?.toLowerCase() !== 'ipmi') return undefined;
  const parsed = parseHostPort(match ? (match[2] ?? '') : text);
  if (!parsed) return undefined;
  return formatHostPort(parsed);
}

export function formatHostPort({ host, port }: HostPort): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return port === undefined ? h : `${h}:${port}`;
}

export const NAME_HINT =
  'must be 1-63 characters of letters, digits, ".", "_" or "-", starting with a letter or digit, and not look like an id';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ids are UUIDs; a name must never be mistaken for one. */
export function isId(ref: string): boolean {
  return UUID.test(ref);
}

export function isName(input: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(input) && !isId(input);
}
