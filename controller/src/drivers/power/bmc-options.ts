/**
 * Per-node BMC settings that real hardware needs. Stored as the overrides an
 * operator gave (jsonb `node.bmc_options`); `resolveBmcOptions` fills in the
 * defaults, which work on most IPMI 2.0 BMCs. Validation never touches the BMC.
 */
export interface BmcOptions {
  /**
   * IPMI 2.0 cipher suite id. Always passed explicitly: without it ipmitool
   * 1.8.19 first probes suite 17 and a BMC without it costs ≈ 10 s per call.
   * @default 3 (HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128: the one nearly every BMC has)
   */
  cipherSuite: number;
  /** FreeIPMI `-W` workaround flags, e.g. `opensesspriv` (many Supermicro, Dell, ipmi_sim). @default [] */
  freeipmiWorkarounds: string[];
  /** How long one tool invocation may wait for the BMC before it counts as unreachable. @default 10000 */
  timeoutMs: number;
  /** Retries of a transient failure (unreachable, busy), with exponential backoff. @default 2 */
  retries: number;
  /** How long a power change may take before the BMC must report the target state. @default 60000 */
  powerWaitMs: number;
}

/** What is stored: only the settings that differ from the defaults. */
export type StoredBmcOptions = Partial<BmcOptions>;

export const DEFAULT_BMC_OPTIONS: Readonly<BmcOptions> = Object.freeze({
  cipherSuite: 3,
  freeipmiWorkarounds: [],
  timeoutMs: 10_000,
  retries: 2,
  powerWaitMs: 60_000,
});

/** FreeIPMI's out-of-band workaround flags (ipmipower(8), WORKAROUNDS). */
export const FREEIPMI_WORKAROUNDS = [
  'authcap',
  'nochecksumcheck',
  'idzero',
  'unexpectedauth',
  'forcepermsg',
  'endianseq',
  'noauthcodecheck',
  'intel20',
  'supermicro20',
  'sun20',
  'opensesspriv',
  'integritycheckvalue',
] as const;

export const LIMITS = {
  cipherSuite: [1, 17],
  timeoutMs: [500, 120_000],
  retries: [0, 10],
  powerWaitMs: [1_000, 3_600_000],
} as const;

export function resolveBmcOptions(stored: StoredBmcOptions | null | undefined): BmcOptions {
  return { ...DEFAULT_BMC_OPTIONS, freeipmiWorkarounds: [], ...(stored ?? {}) };
}

/** The API message's shape (ingot.v1.BmcOptions): zero means "default", retries is optional. */
export interface BmcOptionsInput {
  cipherSuite?: number;
  freeipmiWorkarounds?: string[];
  timeoutMs?: number;
  retries?: number | undefined;
  powerWaitMs?: number;
}

/**
 * Validates the API's BmcOptions into what is stored; `{ invalid }` names the
 * sub-field and the allowed range. An empty message (or none) clears every
 * override: the column becomes null.
 */
export function parseBmcOptions(value: unknown): StoredBmcOptions | null | { invalid: string } {
  if (value === undefined || value === null) return null;
  const input = value as BmcOptionsInput;
  const out: StoredBmcOptions = {};
  const problems: string[] = [];
  const int = (key: keyof typeof LIMITS, name: string, zeroIsDefault: boolean) => {
    const v = input[key];
    if (v === undefined || (zeroIsDefault && v === 0)) return;
    const [min, max] = LIMITS[key];
    if (!Number.isInteger(v) || v < min || v > max) problems.push(`${name} must be from ${min} to ${max}`);
    else out[key] = v;
  };
  int('cipherSuite', 'cipher_suite', true);
  int('timeoutMs', 'timeout_ms', true);
  int('retries', 'retries', false);
  int('powerWaitMs', 'power_wait_ms', true);
  const flags = [...new Set((input.freeipmiWorkarounds ?? []).map((f) => f.trim().toLowerCase()))];
  const unknown = flags.filter((f) => !(FREEIPMI_WORKAROUNDS as readonly string[]).includes(f));
  if (unknown.length > 0) {
    problems.push(
      `freeipmi_workarounds: unknown flag ${unknown.map((f) => `"${f.slice(0, 32)}"`).join(', ')} (known: ${FREEIPMI_WORKAROUNDS.join(', ')})`,
    );
  } else if (flags.length > 0) {
    out.freeipmiWorkarounds = flags;
  }
  if (problems.length > 0) return { invalid: problems.join('; ') };
  return Object.keys(out).length === 0 ? null : out;
}

/** Stored overrides → the API message, defaults filled in so operators see what applies. */
export function bmcOptionsToInput(stored: StoredBmcOptions | null | undefined): Required<BmcOptionsInput> {
  const o = resolveBmcOptions(stored);
  return {
    cipherSuite: o.cipherSuite,
    freeipmiWorkarounds: o.freeipmiWorkarounds,
    timeoutMs: o.timeoutMs,
    retries: o.retries,
    powerWaitMs: o.powerWaitMs,
  };
}
