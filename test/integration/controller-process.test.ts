import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, type Backend, createPgDatabase, InventoryApi } from '../support/controller.ts';
import { type ControllerProcess, type LogLine, ProcessTracker, type Serving } from '../support/process.ts';

// The controller as operators run it: `node controller/src/main.ts`, a separate process with its
// own signals, exit codes, files and stdout. In-process tests (test/support/controller.ts) cannot
// see any of that.

const PORT_0 = ['--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0'];
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const pgUrl = process.env.INGOT_TEST_PG_URL;
/** Safety net for tests that start PGlite (seconds each; minutes on a loaded 2-core machine). */
const SLOW_MS = 600_000;

const tracker = new ProcessTracker();
const tempDirs: string[] = [];
const pgDatabases: string[] = [];
const apis: InventoryApi[] = [];

afterAll(async () => {
  for (const api of apis.splice(0)) api.close();
  await tracker.killAll();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  await dropPgDatabases();
});

function tempDir(): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'ingot-process-')));
  tempDirs.push(dir);
  return dir;
}

async function pgDatabase(): Promise<string> {
  const url = await createPgDatabase();
  pgDatabases.push(url);
  return url;
}

async function dropPgDatabases(): Promise<void> {
  if (!pgUrl || pgDatabases.length === 0) return;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  try {
    for (const url of pgDatabases.splice(0)) {
      await admin.query(`drop database if exists "${new URL(url).pathname.slice(1)}" with (force)`);
    }
  } finally {
    await admin.end();
  }
}

function api(address: string, token?: string): InventoryApi {
  const client = new InventoryApi(address, token);
  apis.push(client);
  return client;
}

function readToken(dataDir: string): string {
  return readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
}

async function get(httpAddress: string, path: string, init?: RequestInit) {
  const response = await fetch(`http://${httpAddress}${path}`, init);
  return { status: response.status, type: response.headers.get('content-type'), body: await response.text() };
}

/** Every stdout line is a pino JSON object with a known level, an ISO time and a message. */
function expectJsonLogs(ctl: ControllerProcess): LogLine[] {
  const logs = ctl.logs();
  expect(logs.length).toBeGreaterThan(0);
  for (const line of logs) {
    expect(LEVELS, JSON.stringify(line)).toContain(line.level);
    expect(typeof line.time === 'string' && new Date(line.time).toISOString(), JSON.stringify(line)).toBe(
      line.time,
    );
    expect(typeof line.msg, JSON.stringify(line)).toBe('string');
    expect(line.service).toBe('ingot-controller');
  }
  return logs;
}

/** Every regular file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

function filesContaining(dir: string, needle: string): string[] {
  const bytes = Buffer.from(needle, 'utf8');
  return filesUnder(dir).filter((file) => readFileSync(file).includes(bytes));
}

const nodeRequest = {
  ip: '10.0.0.5',
  mac: '52:54:00:00:00:01',
  cpus: 4,
  ramMb: 8192,
  diskGb: 100,
  bmcAddress: '10.1.0.5',
};

describe('a controller started with only a relative --data-dir and port-0 listens', () => {
  let cwd: string;
  let dataDir: string;
  let ctl: ControllerProcess;
  let serving: Serving;
  let http: string;
  let grpcAddress: string;
  let token: string;

  beforeAll(async () => {
    cwd = tempDir();
    dataDir = join(cwd, 'state');
    ctl = tracker.spawn(['--data-dir', 'state', ...PORT_0], { cwd });
    serving = await ctl.serving();
    ({ grpc: grpcAddress, http } = serving);
    token = readToken(dataDir);
  }, SLOW_MS);

  it('resolves the data dir against its cwd, puts PGlite there and writes its 0600 files', async () => {
    expect(serving.database).toBe('pglite');
    expect(grpcAddress).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(http).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(await ctl.waitForLog('first start: admin token written')).toMatchObject({
      file: join(dataDir, 'admin.token'),
    });
    expect(readdirSync(cwd)).toEqual(['state']);
    expect(readdirSync(dataDir).sort()).toEqual(['admin.token', 'db', 'images', 'secret.key']);
    expect(existsSync(join(dataDir, 'db', 'PG_VERSION'))).toBe(true);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'secret.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dataDir, 'admin.token'), 'utf8')).toMatch(/^ingot_[A-Za-z0-9_-]{43}\n$/);
    const key = readFileSync(join(dataDir, 'secret.key'), 'utf8').trim();
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
  });

  it('answers /healthz with 200 "ok" and other paths and methods with 404 and 405', async () => {
    expect(await get(http, '/healthz')).toEqual({ status: 200, type: 'text/plain', body: 'ok\n' });
    expect((await get(http, '/nope')).status).toBe(404);
    expect((await get(http, '/healthz', { method: 'POST' })).status).toBe(405);
  });

  it('counts calls by method and status code in /metrics', async () => {
    const flavorsOk = 'ingot_grpc_requests_total{method="/ingot.v1.InventoryService/ListFlavors",code="OK"}';
    const before = await get(http, '/metrics');
    expect(before).toMatchObject({ status: 200, type: 'text/plain; version=0.0.4' });
    expect(before.body).toContain('# TYPE ingot_grpc_requests_total counter\n');
    expect(before.body).not.toContain(flavorsOk);

    await api(grpcAddress, token).call('listFlavors', {});
    const after = (await get(http, '/metrics')).body;
    expect(after).toContain(`${flavorsOk} 1\n`);
    expect(after).toMatch(
      /^ingot_grpc_request_seconds_total\{method="\/ingot\.v1\.InventoryService\/ListFlavors",code="OK"\} \d+\.\d{6}$/m,
    );
  });

  it('serves the admin token from admin.token and refuses calls without it or with another', async () => {
    const created = await api(grpcAddress, token).call('createNode', { node: nodeRequest });
    expect(created).toMatchObject({ mac: '52:54:00:00:00:01', name: 'node-525400000001' });

    const missing = await api(grpcAddress).fail('listNodes', {});
    expect(missing).toMatchObject({ code: grpc.status.UNAUTHENTICATED, reason: 'UNAUTHENTICATED' });
    expect(missing.message).toContain('authorization: Bearer <token>');

    const wrong = await api(grpcAddress, `ingot_${randomBytes(32).toString('base64url')}`).fail(
      'listNodes',
      {},
    );
    expect(wrong).toEqual({
      code: grpc.status.UNAUTHENTICATED,
      message: 'the bearer token is not valid',
      reason: 'UNAUTHENTICATED',
      metadata: {},
      violations: [],
    });
    const unauthenticated = (await get(http, '/metrics')).body;
    expect(unauthenticated).toContain(
      'ingot_grpc_requests_total{method="/ingot.v1.InventoryService/ListNodes",code="UNAUTHENTICATED"} 2\n',
    );
  });

  it('stops on SIGTERM with exit code 0 and logs only JSON lines, "controller stopped" last', async () => {
    expect(await ctl.terminate()).toEqual({ code: 0, signal: null });
    expect(ctl.stderr).toBe('');
    const logs = expectJsonLogs(ctl);
    const msgs = logs.map((line) => line.msg);
    expect(msgs.indexOf('first start: admin token written')).toBeLessThan(msgs.indexOf('controller serving'));
    const shuttingDown = msgs.indexOf('shutting down');
    expect(shuttingDown).toBeGreaterThan(msgs.indexOf('controller serving'));
    expect(logs[shuttingDown]).toMatchObject({ level: 'info', signal: 'SIGTERM' });
    expect(msgs.at(-1)).toBe('controller stopped');
    // A clean run, refused calls included, has nothing to warn an operator about.
    expect(logs.filter((line) => !['debug', 'info'].includes(line.level))).toEqual([]);
    expect(ctl.stdout).not.toContain(token);
  });
});

describe('credentials given to a controller at debug level', () => {
  it(
    'never appear in its logs, in API answers or in plaintext in the PGlite files',
    async () => {
      const dataDir = tempDir();
      const ctl = tracker.spawn(['--data-dir', dataDir, '--log-level', 'debug', ...PORT_0]);
      const { grpc: address } = await ctl.serving();
      const token = readToken(dataDir);
      const admin = api(address, token);
      const secret = (what: string) => `${what}-${randomBytes(12).toString('hex')}`;
      const passwords = {
        switch: secret('switch-pw'),
        switchUpdated: secret('switch-pw2'),
        bmc: secret('bmc-pw'),
        bmcUpdated: secret('bmc-pw2'),
        bmcRejected: secret('bmc-pw3'),
        bmcInvalid: secret('bmc-pw4'),
      };
      // Stored in plaintext next to the sealed password: proves the database files can be searched.
      const canary = secret('rack-canary');
      const answers: unknown[] = [];
      const answer = async <T>(call: Promise<T>): Promise<T> => {
        const result = await call;
        answers.push(result);
        return result;
      };

      const sw = await answer(
        admin.call('createSwitch', {
          switch: {
            name: 'tor1',
            address: '10.0.0.2',
            username: 'netops',
            password: passwords.switch,
            driver: 'juniper',
            description: canary,
          },
        }),
      );
      expect(sw).toMatchObject({ hasPassword: true, password: '', description: canary });
      const node = await answer(
        admin.call('createNode', {
          node: {
            ...nodeRequest,
            bmcUsername: 'root',
            bmcPassword: passwords.bmc,
            switchId: 'tor1',
            switchPort: 'ge-0/0/1',
          },
        }),
      );
      expect(node).toMatchObject({ hasBmcPassword: true, bmcPassword: '' });
      await answer(
        admin.call('updateNode', {
          node: { id: node.id, bmcPassword: passwords.bmcUpdated },
          updateMask: ['bmc_password'],
        }),
      );
      await answer(
        admin.call('updateSwitch', {
          switch: { id: sw.id, password: passwords.switchUpdated },
          updateMask: ['password'],
        }),
      );
      expect(
        await answer(
          admin.fail('createNode', {
            node: { ...nodeRequest, name: 'again', bmcPassword: passwords.bmcRejected },
          }),
        ),
      ).toMatchObject({ code: grpc.status.ALREADY_EXISTS, reason: 'NODE_ALREADY_EXISTS' });
      expect(
        await answer(
          admin.fail('createNode', {
            node: { ...nodeRequest, mac: 'not-a-mac', bmcPassword: passwords.bmcInvalid },
          }),
        ),
      ).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, violations: [{ field: 'node.mac' }] });
      const tooLong = passwords.bmcInvalid.repeat(1 + Math.ceil(1024 / passwords.bmcInvalid.length));
      expect(
        await answer(
          admin.fail('updateNode', {
            node: { id: node.id, bmcPassword: tooLong },
            updateMask: ['bmc_password'],
          }),
        ),
      ).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, violations: [{ field: 'node.bmc_password' }] });
      await answer(admin.call('getNode', { id: node.id }));
      await answer(admin.call('listNodes', {}));
      await answer(admin.call('getSwitch', { id: 'tor1' }));
      await answer(admin.call('listSwitches', {}));

      expect(await ctl.terminate()).toEqual({ code: 0, signal: null });
      const logs = expectJsonLogs(ctl);
      // Proof that the run logged at debug level, call failures included.
      expect(logs.filter((line) => line.level === 'debug' && line.msg === 'rpc failed')).toHaveLength(3);

      const dbDir = join(dataDir, 'db');
      expect(filesContaining(dbDir, canary).length).toBeGreaterThan(0);
      for (const [name, password] of Object.entries(passwords)) {
        expect(ctl.stdout, `${name} password in stdout`).not.toContain(password);
        expect(ctl.stderr, `${name} password in stderr`).not.toContain(password);
        expect(JSON.stringify(answers), `${name} password in an API answer`).not.toContain(password);
        expect(filesContaining(dbDir, password), `${name} password in the database files`).toEqual([]);
      }
      expect(ctl.stdout + ctl.stderr).not.toContain(token);
      expect(filesContaining(dbDir, token), 'admin token in the database files').toEqual([]);
    },
    SLOW_MS,
  );
});

describe.each(BACKENDS)('a controller restarted on %s', (backend: Backend) => {
  it.skipIf(backend === 'postgres' && !pgUrl)(
    'keeps every object, its secret key and its admin token, and writes no new admin.token',
    async () => {
      const dataDir = tempDir();
      const database = backend === 'postgres' ? ['--database', await pgDatabase()] : [];
      const args = ['--data-dir', dataDir, ...database, ...PORT_0];

      const first = tracker.spawn(args);
      const firstServing = await first.serving();
      expect(firstServing.database).toBe(backend);
      const tokenFile = join(dataDir, 'admin.token');
      const tokenBefore = { text: readFileSync(tokenFile, 'utf8'), stat: statSync(tokenFile) };
      const keyBefore = readFileSync(join(dataDir, 'secret.key'), 'utf8');
      const token = tokenBefore.text.trim();
      const before = api(firstServing.grpc, token);

      await before.call('createSwitch', {
        switch: {
          name: 'tor1',
          address: '10.0.0.2:830',
          username: 'netops',
          password: 'pw',
          driver: 'juniper',
        },
      });
      await before.call('createNode', {
        node: { ...nodeRequest, bmcPassword: 'pw', switchId: 'tor1', switchPort: 'ge-0/0/1' },
      });
      await before.call('createNode', {
        node: {
          ...nodeRequest,
          name: 'spare',
          ip: '10.0.0.6',
          mac: '52:54:00:00:00:02',
          bmcAddress: '10.1.0.6',
        },
      });
      await before.call('createProject', { project: { name: 'tenant-a', isolated: true, description: 'a' } });
      await before.call('createFlavor', {
        flavor: {
          name: 'bm.small',
          vcpus: 4,
          ramMb: 8192,
          diskGb: 100,
          extraSpecs: { 'trait:CUSTOM_BM': 'required' },
        },
      });
      await before.call('createHost', { host: { name: 'hv1', vcpus: 64, ramMb: 262144, diskGb: 2000 } });
      await before.call('createAggregate', { aggregate: { name: 'rack1', availabilityZone: 'az1' } });
      await before.call('addAggregateHost', { aggregate: 'rack1', host: 'hv1' });
      await before.call('setAggregateMetadata', { aggregate: 'rack1', set: { ssd: 'true' } });
      const inventory = async (client: InventoryApi) => ({
        switches: await client.call('listSwitches', { pageSize: 100 }),
        nodes: await client.call('listNodes', { pageSize: 100 }),
        projects: await client.call('listProjects', { pageSize: 100 }),
        flavors: await client.call('listFlavors', { pageSize: 100 }),
        aggregates: await client.call('listAggregates', { pageSize: 100 }),
        hosts: await client.call('listHosts', { pageSize: 100 }),
      });
      const stored = await inventory(before);
      expect(stored.nodes.nodes.map((n) => [n.name, n.hasBmcPassword])).toEqual([
        ['node-525400000001', true],
        ['spare', false],
      ]);
      expect(stored.aggregates.aggregates).toMatchObject([{ hosts: ['hv1'], metadata: { ssd: 'true' } }]);
      expect(await first.terminate()).toEqual({ code: 0, signal: null });
      before.close();

      const second = tracker.spawn(args);
      const secondServing = await second.serving();
      const after = api(secondServing.grpc, token);
      expect(await inventory(after)).toEqual(stored);
      expect(await after.fail('deleteSwitch', { id: 'tor1' })).toMatchObject({ reason: 'SWITCH_IN_USE' });
      expect(await second.terminate()).toEqual({ code: 0, signal: null });

      expect(second.logs().map((line) => line.msg)).not.toContain('first start: admin token written');
      expect(first.logs().map((line) => line.msg)).toContain('first start: admin token written');
      const tokenAfter = statSync(tokenFile);
      expect(readFileSync(tokenFile, 'utf8')).toBe(tokenBefore.text);
      expect([tokenAfter.ino, tokenAfter.mtimeMs]).toEqual([tokenBefore.stat.ino, tokenBefore.stat.mtimeMs]);
      expect(readFileSync(join(dataDir, 'secret.key'), 'utf8')).toBe(keyBefore);
      expect(readdirSync(dataDir).sort()).toEqual(
        backend === 'pglite'
          ? ['admin.token', 'db', 'images', 'secret.key']
          : ['admin.token', 'images', 'secret.key'],
      );
    },
    SLOW_MS,
  );
});

describe('a controller asked to stop while a call is in flight', () => {
  it.skipIf(!pgUrl)(
    'finishes the call, answers /healthz 503 meanwhile, then exits 0',
    async () => {
      const database = await pgDatabase();
      const dataDir = tempDir();
      const ctl = tracker.spawn(['--data-dir', dataDir, '--database', database, ...PORT_0]);
      const { grpc: address, http } = await ctl.serving();
      const admin = api(address, readToken(dataDir));
      const node = await admin.call('createNode', { node: nodeRequest });

      // A row lock held from outside keeps UpdateNode waiting inside the controller.
      const locker = new pg.Client({ connectionString: database });
      await locker.connect();
      let update: Promise<unknown> | undefined;
      try {
        await locker.query('begin');
        await locker.query('select id from node where id = $1 for update', [node.id]);
        update = admin.call('updateNode', {
          node: { id: node.id, maintenance: true, maintenanceReason: 'draining' },
          updateMask: ['maintenance', 'maintenance_reason'],
        });
        update.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
        await waitUntil(async () => {
          const { rows } = await locker.query<{ waiting: number }>(
            `select count(*)::int as waiting from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock'`,
          );
          return (rows[0]?.waiting ?? 0) > 0;
        });

        ctl.signal('SIGTERM');
        await ctl.waitForLog('shutting down');
        expect(await get(http, '/healthz')).toEqual({
          status: 503,
          type: 'text/plain',
          body: 'shutting down\n',
        });
        expect(ctl.logs().map((line) => line.msg)).not.toContain('controller stopped');
        await locker.query('commit');
      } finally {
        await locker.end();
      }

      expect(await update).toMatchObject({ id: node.id, maintenance: true, maintenanceReason: 'draining' });
      expect(await ctl.waitForExit()).toEqual({ code: 0, signal: null });
      expect(ctl.logs().at(-1)?.msg).toBe('controller stopped');
    },
    SLOW_MS,
  );
});

/** Polls `condition` until it holds; the deadline is a safety net. */
async function waitUntil(condition: () => Promise<boolean>, safetyNetMs = 30_000): Promise<void> {
  const deadline = Date.now() + safetyNetMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${safetyNetMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a controller given a bad configuration', () => {
  it.each([
    {
      how: '--grpc-listen nonsense',
      args: ['--grpc-listen', 'nonsense'],
      line: 'ingot-controller: grpcListen: must be HOST:PORT',
    },
    {
      how: '--database mysql://x',
      args: ['--database', 'mysql://x'],
      line: 'ingot-controller: database: must be a postgres:// URL, or empty for the embedded database',
    },
    {
      how: 'INGOT_HTTP_LISTEN=nonsense',
      env: { INGOT_HTTP_LISTEN: 'nonsense' },
      line: 'ingot-controller: httpListen: must be HOST:PORT',
    },
    {
      how: '--log-level loud',
      args: ['--log-level', 'loud'],
      line: /^ingot-controller: logLevel: .*"debug".*$/,
    },
    { how: 'an unknown flag', args: ['--bogus'], line: /^ingot-controller: Unknown option '--bogus'/ },
    {
      how: 'a config file with an unknown key',
      config: { grpcListen: '127.0.0.1:0', colour: 'blue' },
      line: /^ingot-controller: config: .*"colour"/,
    },
    {
      how: 'a config file that is not JSON',
      config: '{ grpcListen: ',
      line: /^ingot-controller: config file .*ingot\.json: .*JSON/,
    },
  ])('exits 2 with one line on stderr for $how', async ({ args = [], env, config, line }) => {
    const cwd = tempDir();
    const argv = [...args];
    if (config !== undefined) {
      writeFileSync(join(cwd, 'ingot.json'), typeof config === 'string' ? config : JSON.stringify(config));
      argv.push('--config', 'ingot.json');
    }
    const ctl = tracker.spawn(argv, { cwd, env });
    expect(await ctl.waitForExit()).toEqual({ code: 2, signal: null });
    expect(ctl.stdout).toBe('');
    const lines = ctl.stderr.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('');
    if (typeof line === 'string') expect(lines[0]).toBe(line);
    else expect(lines[0]).toMatch(line);
    expect(existsSync(join(cwd, 'ingot-data')), 'a data dir was created').toBe(false);
  });

  describe('when a port is in use', () => {
    let blocker: Server;
    let port: number;

    afterAll(async () => {
      if (blocker?.listening) await new Promise((resolve) => blocker.close(resolve));
    });

    it.each(['grpc', 'http'])(
      'exits 1 with a fatal log line when the %s port is taken',
      async (which) => {
        blocker ??= createServer();
        if (!blocker.listening) {
          await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
          port = (blocker.address() as { port: number }).port;
        }
        const taken = `127.0.0.1:${port}`;
        const listen =
          which === 'grpc'
            ? ['--grpc-listen', taken, '--http-listen', '127.0.0.1:0']
            : ['--grpc-listen', '127.0.0.1:0', '--http-listen', taken];
        const ctl = tracker.spawn(['--data-dir', tempDir(), ...listen]);

        expect(await ctl.waitForExit()).toEqual({ code: 1, signal: null });
        const logs = expectJsonLogs(ctl);
        const fatal = logs.filter((line) => line.level === 'fatal');
        expect(fatal).toMatchObject([
          {
            msg: 'controller failed to start',
            err: { message: expect.stringContaining(`EADDRINUSE: address already in use ${taken}`) },
          },
        ]);
        expect(logs.map((line) => line.msg)).not.toContain('controller serving');
      },
      SLOW_MS,
    );
  });
});
