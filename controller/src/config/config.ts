import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { DEFAULT_FILTERS, FILTERS } from '../domain/scheduler/filters/index.ts';
import { DEFAULT_WEIGHERS, WEIGHERS } from '../domain/scheduler/weighers.ts';
import { NetbootSettings } from '../drivers/netboot/netboot-config.ts';
import type { DatabaseLocation } from '../store/orm.ts';

const listen = z
  .string()
  .refine(
    (s) =>
      /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s) &&
      Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535,
    'must be HOST:PORT',
  );

const ratio = z.number().positive().max(1000);

/** The filter scheduler; set in the config file under `scheduler`. */
const SchedulerSettings = z
  .object({
    /** Filters by name, in the order they run. @default every filter */
    filters: z.array(z.enum(Object.keys(FILTERS) as [string, ...string[]])).default(DEFAULT_FILTERS),
    /** Weighers by name. @default LeastWasteWeigher, RamWeigher */
    weighers: z.array(z.enum(Object.keys(WEIGHERS) as [string, ...string[]])).default(DEFAULT_WEIGHERS),
    /** vCPU overcommit on hypervisor hosts. @default 16 (nova's) */
    cpuAllocationRatio: ratio.default(16),
    /** RAM overcommit on hypervisor hosts. @default 1.5 (nova's) */
    ramAllocationRatio: ratio.default(1.5),
    /** Disk overcommit on hypervisor hosts. @default 1 */
    diskAllocationRatio: ratio.default(1),
    /** Positive spreads VMs by free RAM, negative packs them. @default 1 */
    ramWeigherMultiplier: z.number().default(1),
    /** The aggregate for projects with none of their own. @default default */
    defaultAggregate: z.string().min(1).default('default'),
    /** The zone of hosts in no zoned aggregate. @default nova */
    defaultAvailabilityZone: z.string().min(1).default('nova'),
  })
  .strict();

/** The provisioning conductor; set in the config file under `provisioning`. */
const ProvisioningSettings = z
  .object({
    /**
     * How long a powered-on node's agent has to take its task before the node is power-cycled (real
     * servers spend minutes in POST and PXE). @default 600000 (10 min)
     */
    agentTimeoutMs: z.number().int().positive().default(600_000),
    /** How long a deploy or wipe may go without progress before the node is power-cycled. @default 300000 */
    stallTimeoutMs: z.number().int().positive().default(300_000),
    /** Power cycles one flow may spend on retries before its instance goes to ERROR. @default 2 */
    powerCycles: z.number().int().min(0).max(10).default(2),
    /** How long a controller's hold on a flow lasts unrenewed; another controller takes over after. @default 30000 */
    leaseMs: z.number().int().min(1000).default(30_000),
    /** How often a controller looks for flows nobody drives. @default 2000 */
    scanIntervalMs: z.number().int().min(100).default(2_000),
  })
  .strict();

export type ProvisioningSettings = z.infer<typeof ProvisioningSettings>;

const port = z.number().int().min(1).max(65535);

/** The image store's capture ports (plain TCP, one connection each); set in the config file under `capture`. */
const CaptureSettings = z
  .object({
    /** Address the capture ports listen on. @default the host of `httpListen` */
    listenHost: z.string().default(''),
    /**
     * Host nodes and operators send to (`dd | nc HOST PORT`). @default the host of `netboot.controllerUrl`,
     * else of `httpAdvertiseUrl`, else `listenHost` (127.0.0.1 when that is a wildcard)
     */
    advertiseHost: z.string().default(''),
    /** The port range, both ends included: one port per capture in progress. @default 7790 */
    firstPort: port.default(7790),
    /** @default 7799 */
    lastPort: port.default(7799),
    /** How long a capture task's port waits for the agent to connect. @default 3600000 (1 h) */
    connectTimeoutMs: z.number().int().positive().max(2_147_483_647).default(3_600_000),
  })
  .strict()
  .refine((c) => c.lastPort >= c.firstPort, { message: 'lastPort must not be below firstPort' });

export type CaptureSettings = z.infer<typeof CaptureSettings>;

/** Everything the controller can be told; flags beat environment beats file beats defaults. */
const Settings = z
  .object({
    /** gRPC API address. Port 0 picks a free port (tests). @default 127.0.0.1:7700 */
    grpcListen: listen.default('127.0.0.1:7700'),
    /** HTTP address for health, metrics and (later) boot assets and images. @default 127.0.0.1:7780 */
    httpListen: listen.default('127.0.0.1:7780'),
    /** `postgres://…` for PostgreSQL; empty for the embedded PGlite database in `dataDir/db`. */
    database: z.string().default(''),
    /** State of this controller: embedded database, secret key, first admin token. @default ./ingot-data */
    dataDir: z.string().min(1).default('./ingot-data'),
    /** AES-256 key sealing BMC and switch passwords. @default <dataDir>/secret.key, created if missing */
    secretKeyFile: z.string().default(''),
    /**
     * Base URL (`http://host:port`) of the HTTP listener as agents and download links must use it, for
     * when it differs from what they dialled (NAT, a proxy). @default http://<host the client dialled for
     * gRPC>:<HTTP port>
     */
    httpAdvertiseUrl: z.union([z.url({ protocol: /^https?$/ }), z.literal('')]).default(''),
    /**
     * Where uploaded images are kept. Controllers sharing a database must share it too (a network
     * filesystem): any of them may hand an agent a download URL. @default <dataDir>/images
     */
    imageDir: z.string().default(''),
    /** The agent executable served at `/agent/ingot-agent`. @default <repository>/build/ingot-agent (`make agent`) */
    agentBinary: z.string().default(''),
    /**
     * The bootstrap image's directory (`vmlinuz`, `initrd.img`), served at `/boot/vmlinuz` and
     * `/boot/initrd.img`. @default <repository>/build/bootstrap (`make bootstrap`)
     */
    bootstrapDir: z.string().default(''),
    /** pino level. @default info */
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    scheduler: SchedulerSettings.default(SchedulerSettings.parse({})),
    /** DHCP and boot files for nodes being provisioned (drivers/netboot/netboot-config.ts). @default off */
    netboot: NetbootSettings.default(NetbootSettings.parse({})),
    provisioning: ProvisioningSettings.default(ProvisioningSettings.parse({})),
    capture: CaptureSettings.default(CaptureSettings.parse({})),
  })
  .strict();

export type Settings = z.infer<typeof Settings>;

/** Resolved configuration the controller runs with. */
export interface ControllerConfig extends Settings {
  dataDir: string;
  secretKeyFile: string;
  imageDir: string;
  databaseLocation: DatabaseLocation;
}

const FLAGS = {
  'grpc-listen': 'grpcListen',
  'http-listen': 'httpListen',
  database: 'database',
  'data-dir': 'dataDir',
  'secret-key-file': 'secretKeyFile',
  'log-level': 'logLevel',
  'http-advertise-url': 'httpAdvertiseUrl',
  'agent-binary': 'agentBinary',
  'bootstrap-dir': 'bootstrapDir',
  'image-dir': 'imageDir',
} as const;

export class ConfigError extends Error {}

/**
 * Reads flags (`--grpc-listen`, …, `--config FILE`), `INGOT_*` environment
 * variables (`INGOT_GRPC_LISTEN`, …, `INGOT_CONFIG`) and a JSON config file
 * whose keys are the camelCase settings. Throws ConfigError with every problem.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): ControllerConfig {
  let parsed: Record<string, unknown>;
  try {
    parsed = parseFlags(argv);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const configFile = (parsed.config as string | undefined) ?? env.INGOT_CONFIG;
  const fromFile = configFile ? readConfigFile(configFile) : {};
  const fromEnv: Record<string, string> = {};
  const fromFlags: Record<string, string> = {};
  for (const [flag, key] of Object.entries(FLAGS)) {
    const envValue = env[`INGOT_${flag.toUpperCase().replace(/-/g, '_')}`];
    if (envValue !== undefined && envValue !== '') fromEnv[key] = envValue;
    const flagValue = parsed[flag];
    if (typeof flagValue === 'string') fromFlags[key] = flagValue;
  }
  const result = Settings.safeParse({ ...fromFile, ...fromEnv, ...fromFlags });
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; '),
    );
  }
  const settings = result.data;
  const dataDir = resolve(settings.dataDir);
  const database = settings.database;
  if (database && !/^postgres(ql)?:\/\//.test(database)) {
    throw new ConfigError('database: must be a postgres:// URL, or empty for the embedded database');
  }
  return {
    ...settings,
    dataDir,
    secretKeyFile: settings.secretKeyFile ? resolve(settings.secretKeyFile) : join(dataDir, 'secret.key'),
    imageDir: settings.imageDir ? resolve(settings.imageDir) : join(dataDir, 'images'),
    databaseLocation: database
      ? { kind: 'postgres', url: database }
      : { kind: 'pglite', dir: join(dataDir, 'db') },
    capture: captureDefaults(settings),
  };
}

/** The capture settings with their hosts filled in (see CaptureSettings). */
function captureDefaults(settings: Settings): CaptureSettings {
  const bare = (host: string) => host.replace(/^\[(.*)\]$/, '$1');
  const listenHost = bare(
    settings.capture.listenHost || settings.httpListen.slice(0, settings.httpListen.lastIndexOf(':')),
  );
  const url = settings.netboot.controllerUrl || settings.httpAdvertiseUrl;
  const wildcard = ['0.0.0.0', '::', ''].includes(listenHost);
  const advertiseHost = bare(
    settings.capture.advertiseHost || (url ? new URL(url).hostname : wildcard ? '127.0.0.1' : listenHost),
  );
  return { ...settings.capture, listenHost, advertiseHost };
}

function parseFlags(argv: string[]) {
  const options = Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' as const }]));
  return parseArgs({ args: argv, options: { ...options, config: { type: 'string' } }, strict: true }).values;
}

function readConfigFile(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`config file ${path}: ${(err as Error).message}`);
  }
}
