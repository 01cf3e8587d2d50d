import { writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../controller/src/config/config.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ingot-config-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, contents: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof contents === 'string' ? contents : JSON.stringify(contents));
  return path;
}

/** The ConfigError message loadConfig throws; fails the test when it throws nothing or something else. */
function configError(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected ConfigError');
}

describe('defaults', () => {
  it('listens on loopback and keeps PGlite and the secret key in the data directory', () => {
    const dataDir = resolve('ingot-data');
    expect(loadConfig([], {})).toEqual({
      grpcListen: '127.0.0.1:7700',
      httpListen: '127.0.0.1:7780',
      database: '',
      dataDir,
      secretKeyFile: join(dataDir, 'secret.key'),
      imageDir: join(dataDir, 'images'),
      httpAdvertiseUrl: '',
      agentBinary: '',
      bootstrapDir: '',
      logLevel: 'info',
      databaseLocation: { kind: 'pglite', dir: join(dataDir, 'db') },
      scheduler: {
        filters: [
          'PlacementFilter',
          'VcpuFilter',
          'RamFilter',
          'DiskFilter',
          'AggregateInstanceExtraSpecsFilter',
          'AvailabilityZoneFilter',
          'NodeStateFilter',
        ],
        weighers: ['LeastWasteWeigher', 'RamWeigher'],
        cpuAllocationRatio: 16,
        ramAllocationRatio: 1.5,
        diskAllocationRatio: 1,
        ramWeigherMultiplier: 1,
        defaultAggregate: 'default',
        defaultAvailabilityZone: 'nova',
      },
      netboot: expect.objectContaining({ mode: 'off', dir: '/var/lib/ingot-netboot', user: 'nobody' }),
      provisioning: {
        agentTimeoutMs: 600_000,
        stallTimeoutMs: 300_000,
        powerCycles: 2,
        leaseMs: 30_000,
        scanIntervalMs: 2_000,
      },
      capture: {
        listenHost: '127.0.0.1',
        advertiseHost: '127.0.0.1',
        firstPort: 7790,
        lastPort: 7799,
        connectTimeoutMs: 3_600_000,
      },
    });
  });

  it('takes netboot settings from the config file and names a bad one', () => {
    const file = join(dir, 'netboot.json');
    writeFileSync(
      file,
      JSON.stringify({ netboot: { mode: 'managed', interface: 'eth1', subnet: '10.0.0.0/24' } }),
    );
    expect(loadConfig(['--config', file], {}).netboot).toMatchObject({ mode: 'managed', interface: 'eth1' });
    writeFileSync(file, JSON.stringify({ netboot: { mode: 'sometimes' } }));
    expect(() => loadConfig(['--config', file], {})).toThrow(/netboot\.mode/);
  });

  it('advertises capture ports on the host nodes already reach, and refuses a reversed port range', async () => {
    const capture = (contents: unknown, argv: string[] = []) =>
      configFile('capture.json', contents).then(
        (file) => loadConfig(['--config', file, ...argv], {}).capture,
      );
    expect(
      await capture({
        netboot: { controllerUrl: 'http://10.0.0.1:7780' },
        httpAdvertiseUrl: 'http://[fd00::1]:80',
      }),
    ).toMatchObject({ listenHost: '127.0.0.1', advertiseHost: '10.0.0.1' });
    expect(await capture({ httpAdvertiseUrl: 'http://[fd00::1]:80' })).toMatchObject({
      advertiseHost: 'fd00::1',
    });
    expect(await capture({}, ['--http-listen', '0.0.0.0:7780'])).toMatchObject({
      listenHost: '0.0.0.0',
      advertiseHost: '127.0.0.1',
    });
    expect(
      await capture({ capture: { listenHost: '[::]', advertiseHost: 'capture.example' } }),
    ).toMatchObject({
      listenHost: '::',
      advertiseHost: 'capture.example',
    });
    const reversed = await configFile('reversed.json', { capture: { firstPort: 7799, lastPort: 7790 } });
    expect(configError(['--config', reversed])).toContain('lastPort must not be below firstPort');
  });

  it('takes scheduler settings from the config file and refuses unknown filters', () => {
    const file = join(dir, 'scheduler.json');
    writeFileSync(
      file,
      JSON.stringify({ scheduler: { filters: ['PlacementFilter'], ramWeigherMultiplier: -1 } }),
    );
    const config = loadConfig(['--config', file], {});
    expect(config.scheduler.filters).toEqual(['PlacementFilter']);
    expect(config.scheduler.ramWeigherMultiplier).toBe(-1);
    expect(config.scheduler.cpuAllocationRatio).toBe(16);
    writeFileSync(file, JSON.stringify({ scheduler: { filters: ['CoreFilter'] } }));
    expect(() => loadConfig(['--config', file], {})).toThrow(/scheduler\.filters\.0/);
  });

  it('derives database and key locations from a chosen data directory', () => {
    const config = loadConfig(['--data-dir', join(dir, 'state')], {});
    expect(config.dataDir).toBe(join(dir, 'state'));
    expect(config.secretKeyFile).toBe(join(dir, 'state', 'secret.key'));
    expect(config.databaseLocation).toEqual({ kind: 'pglite', dir: join(dir, 'state', 'db') });
  });

  it('resolves relative paths against the working directory', () => {
    const config = loadConfig(['--data-dir', 'rel/data', '--secret-key-file', 'keys/k'], {});
    expect(config.dataDir).toBe(resolve('rel/data'));
    expect(config.secretKeyFile).toBe(resolve('keys/k'));
  });
});

describe('precedence', () => {
  it('takes flags over environment over config file over defaults', async () => {
    const file = await configFile('layers.json', {
      grpcListen: '10.0.0.1:1',
      httpListen: '10.0.0.1:2',
      logLevel: 'warn',
      dataDir: '/var/lib/ingot-file',
    });
    const config = loadConfig(['--config', file, '--grpc-listen', '10.0.0.3:1'], {
      INGOT_GRPC_LISTEN: '10.0.0.2:1',
      INGOT_HTTP_LISTEN: '10.0.0.2:2',
    });
    expect(config.grpcListen).toBe('10.0.0.3:1');
    expect(config.httpListen).toBe('10.0.0.2:2');
    expect(config.logLevel).toBe('warn');
    expect(config.dataDir).toBe('/var/lib/ingot-file');
    expect(config.database).toBe('');
  });

  it('reads every setting from INGOT_* variables', () => {
    const config = loadConfig([], {
      INGOT_GRPC_LISTEN: '0.0.0.0:0',
      INGOT_HTTP_LISTEN: '[::]:8080',
      INGOT_DATABASE: 'postgres://ingot@db/ingot',
      INGOT_DATA_DIR: '/srv/ingot',
      INGOT_SECRET_KEY_FILE: '/etc/ingot/secret.key',
      INGOT_IMAGE_DIR: '/mnt/images',
      INGOT_LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      grpcListen: '0.0.0.0:0',
      httpListen: '[::]:8080',
      dataDir: '/srv/ingot',
      secretKeyFile: '/etc/ingot/secret.key',
      imageDir: '/mnt/images',
      logLevel: 'debug',
      databaseLocation: { kind: 'postgres', url: 'postgres://ingot@db/ingot' },
    });
  });

  it('ignores empty environment variables', () => {
    expect(loadConfig([], { INGOT_GRPC_LISTEN: '' }).grpcListen).toBe('127.0.0.1:7700');
  });

  it('finds the config file through INGOT_CONFIG, and --config beats it', async () => {
    const fromEnv = await configFile('env.json', { logLevel: 'error' });
    const fromFlag = await configFile('flag.json', { logLevel: 'trace' });
    expect(loadConfig([], { INGOT_CONFIG: fromEnv }).logLevel).toBe('error');
    expect(loadConfig(['--config', fromFlag], { INGOT_CONFIG: fromEnv }).logLevel).toBe('trace');
  });
});

describe('database', () => {
  it.each(['postgres://ingot:pw@db:5432/ingot', 'postgresql://db/ingot'])(
    'selects PostgreSQL for %s',
    (url) => {
      const config = loadConfig(['--database', url], {});
      expect(config.databaseLocation).toEqual({ kind: 'postgres', url });
    },
  );

  it.each(['mysql://db/ingot', 'sqlite:///tmp/x.db', '/var/lib/ingot/db'])('rejects %s', (url) => {
    expect(configError(['--database', url])).toBe(
      'database: must be a postgres:// URL, or empty for the embedded database',
    );
  });
});

describe('errors', () => {
  it.each(['localhost', '127.0.0.1', ':7700', 'host:port', 'http://h:1', '::1:7700'])(
    'rejects the listen address %j, naming the setting',
    (address) => {
      expect(configError(['--grpc-listen', address])).toBe('grpcListen: must be HOST:PORT');
    },
  );

  it('reports every bad setting at once', () => {
    const message = configError([], { INGOT_HTTP_LISTEN: 'nope', INGOT_LOG_LEVEL: 'loud' });
    expect(message).toMatch(/httpListen: must be HOST:PORT/);
    expect(message).toMatch(/logLevel: /);
  });

  it('rejects a port above 65535', () => {
    expect(configError(['--grpc-listen', '127.0.0.1:99999'])).toBe('grpcListen: must be HOST:PORT');
  });

  it('rejects an unknown flag, naming it', () => {
    expect(configError(['--grpc-listn', '127.0.0.1:1'])).toMatch(/Unknown option '--grpc-listn'/);
  });

  it('rejects positional arguments', () => {
    expect(configError(['serve'])).toMatch(/Unexpected argument 'serve'/);
  });

  it('rejects an unknown key in the config file, naming it', async () => {
    const file = await configFile('typo.json', { grpcListn: '127.0.0.1:1' });
    expect(configError(['--config', file])).toBe('config: Unrecognized key: "grpcListn"');
  });

  it('rejects a config value of the wrong type, naming the key', async () => {
    const file = await configFile('number.json', { grpcListen: 7700 });
    expect(configError(['--config', file])).toMatch(/^grpcListen: /);
  });

  it('rejects a config file that is not JSON, naming the file', async () => {
    const file = await configFile('broken.json', '{ grpcListen: ');
    expect(configError(['--config', file])).toMatch(new RegExp(`^config file ${file}: `));
  });

  it('rejects a missing config file, naming the file', () => {
    const file = join(dir, 'absent.json');
    expect(configError([], { INGOT_CONFIG: file })).toMatch(new RegExp(`^config file ${file}: .*ENOENT`));
  });
});
