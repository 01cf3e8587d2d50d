import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Any } from '../../build/gen/google/protobuf/any.ts';
import { BadRequest, ErrorInfo } from '../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../build/gen/google/rpc/status.ts';
import {
  Aggregate,
  Flavor,
  Host,
  InventoryServiceService,
  Node,
  Project,
  ProvisionState,
  Switch,
} from '../../build/gen/ingot/v1/inventory.ts';
import { parseMetadataChanges, parseProvisionState, provisionStateName } from '../../tools/bmctl/args.ts';
import { type BmctlIo, runBmctl } from '../../tools/bmctl/cli.ts';
import { nodeView } from '../../tools/bmctl/commands/node.ts';
import type { InventoryRpc, RequestOf, ResponseOf } from '../../tools/bmctl/connection.ts';
import { describeServiceError } from '../../tools/bmctl/errors.ts';
import { renderTable, toProtoJson } from '../../tools/bmctl/output.ts';

// A real grpc-js server that records what bmctl sends and answers from a per-test script.

type Answers = { [K in InventoryRpc]?: (request: RequestOf<K>) => ResponseOf<K> };

interface RecordedCall {
  rpc: InventoryRpc;
  request: unknown;
  authorization: string | undefined;
  deadline: number;
}

let server: Server;
let endpoint: string;
let answers: Answers = {};
let calls: RecordedCall[] = [];
let workDir: string;

function recordingInventory(): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const rpc of Object.keys(InventoryServiceService) as InventoryRpc[]) {
    impl[rpc] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const authorization = call.metadata.get('authorization')[0];
      calls.push({
        rpc,
        request: call.request,
        authorization: typeof authorization === 'string' ? authorization : undefined,
        deadline: Number(call.getDeadline()),
      });
      const answer = answers[rpc] as ((request: unknown) => unknown) | undefined;
      if (answer === undefined) {
        callback({ code: status.UNIMPLEMENTED, details: `${rpc} is not scripted in this test` });
        return;
      }
      try {
        callback(null, answer(call.request));
      } catch (err) {
        callback(err as ServerErrorResponse);
      }
    };
  }
  return impl;
}

/** An error as the controller sends it: a status plus `google.rpc.Status` details in the trailer. */
function controllerError(code: status, message: string, details: Any[] = []): ServerErrorResponse {
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(Status.encode({ code, message, details }).finish()));
  return Object.assign(new Error(message), { code, details: message, metadata });
}

function badRequest(...violations: [field: string, description: string][]): Any {
  return {
    typeUrl: 'type.googleapis.com/google.rpc.BadRequest',
    value: Buffer.from(
      BadRequest.encode({
        fieldViolations: violations.map(([field, description]) => ({
          field,
          description,
          reason: '',
          localizedMessage: undefined,
        })),
      }).finish(),
    ),
  };
}

function errorInfo(reason: string, metadata: Record<string, string> = {}): Any {
  return {
    typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo',
    value: Buffer.from(ErrorInfo.encode({ reason, domain: 'ingot', metadata }).finish()),
  };
}

async function bmctl(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: BmctlIo = {
    env: { INGOT_ENDPOINT: endpoint, INGOT_TOKEN: 'test-token', ...opts.env },
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
    readStdin: async () => opts.stdin ?? '',
    cwd: opts.cwd ?? workDir,
  };
  const code = await runBmctl(argv, io);
  return { code, stdout, stderr };
}

async function listen(s: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    s.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
}

beforeAll(async () => {
  server = new Server();
  server.addService(InventoryServiceService, recordingInventory());
  endpoint = `127.0.0.1:${await listen(server)}`;
  workDir = await mkdtemp(join(tmpdir(), 'bmctl-test-'));
});

afterAll(async () => {
  server?.forceShutdown();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

afterEach(() => {
  answers = {};
  calls = [];
});

const created = new Date('2026-11-25T08:39:10.123Z');
const tor1 = Switch.fromPartial({ id: 'sw-1', name: 'tor1', address: '10.0.0.2', driver: 'juniper' });

/** Echoes CreateNode the way the controller answers it: with an id, state and no password. */
function echoNode(request: RequestOf<'createNode'>): Node {
  return Node.fromPartial({
    ...request.node,
    id: 'node-id-1',
    name: request.node?.name || 'node-525400123456',
    bmcPassword: '',
    hasBmcPassword: request.node?.bmcPassword !== '',
    switchId: 'sw-1',
    provisionState: ProvisionState.PROVISION_STATE_ENROLL,
    createTime: created,
    updateTime: created,
  });
}

const seedNodeArgs = [
  '10.0.0.5',
  '52:54:00:12:34:56',
  '8',
  '16384',
  '100',
  '10.0.1.5',
  'admin',
  'ipmi-secret',
  'tor1',
  'ge-0/0/5',
];

describe('node add', () => {
  it('maps the seed positional arguments to CreateNodeRequest and authenticates with the token', async () => {
    answers = { createNode: echoNode, listSwitches: () => ({ switches: [tor1], nextPageToken: '' }) };

    const result = await bmctl([
      'node',
      'add',
      ...seedNodeArgs,
      '--power-driver',
      'freeipmi',
      '--name',
      'n1',
    ]);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(calls[0]).toMatchObject({ rpc: 'createNode', authorization: 'Bearer test-token' });
    expect(calls[0]?.request).toEqual({
      node: Node.fromPartial({
        name: 'n1',
        ip: '10.0.0.5',
        mac: '52:54:00:12:34:56',
        cpus: 8,
        ramMb: 16384,
        diskGb: 100,
        bmcAddress: '10.0.1.5',
        bmcUsername: 'admin',
        bmcPassword: 'ipmi-secret',
        powerDriver: 'freeipmi',
        switchId: 'tor1',
        switchPort: 'ge-0/0/5',
      }),
    });
    // Each call carries the 30 s deadline (checked loosely: this is not a timing test).
    expect(calls[0]?.deadline).toBeGreaterThan(Date.now() + 20_000);
    expect(result.stdout).toContain('has_bmc_password    yes');
    expect(result.stdout).toContain('switch              tor1');
    expect(result.stdout).not.toContain('ipmi-secret');
  });

  it('takes the same fields from named flags', async () => {
    answers = { createNode: echoNode, listSwitches: () => ({ switches: [tor1], nextPageToken: '' }) };
    const passwordFile = join(workDir, 'bmc.pass');
    await writeFile(passwordFile, 'ipmi-secret\n');

    const positional = await bmctl(['node', 'add', ...seedNodeArgs]);
    const named = await bmctl([
      'node',
      'add',
      '--ip=10.0.0.5',
      '--mac=52:54:00:12:34:56',
      '--cpus=8',
      '--ram=16384',
      '--disk=100',
      '--bmc-address=10.0.1.5',
      '--bmc-username=admin',
      '--bmc-password-file=bmc.pass',
      '--switch=tor1',
      '--switch-port=ge-0/0/5',
    ]);

    expect([positional.code, named.code]).toEqual([0, 0]);
    expect(calls.filter((c) => c.rpc === 'createNode').map((c) => c.request)).toEqual([
      calls[0]?.request,
      calls[0]?.request,
    ]);
  });

  it('reads a password given as - from stdin, without its trailing newline', async () => {
    answers = { createNode: echoNode, listSwitches: () => ({ switches: [], nextPageToken: '' }) };
    const args = seedNodeArgs.with(7, '-');

    expect((await bmctl(['node', 'add', ...args], { stdin: 'from-stdin\n' })).code).toBe(0);
    expect(calls[0]?.request).toMatchObject({ node: { bmcPassword: 'from-stdin' } });
  });

  it('refuses a field given both positionally and by flag, before calling the controller', async () => {
    const result = await bmctl(['node', 'add', '10.0.0.5', '--ip', '10.0.0.6']);

    expect(result).toEqual({
      code: 2,
      stdout: '',
      stderr: 'bmctl: give <ip> either as an argument or with --ip, not both\n',
    });
    expect(calls).toEqual([]);
  });

  it('rejects a non-numeric size as a usage error on one line', async () => {
    const result = await bmctl(['node', 'add', '10.0.0.5', '52:54:00:12:34:56', 'eight']);

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      "bmctl: command-argument value 'eight' is invalid for argument 'cpus'. expected a whole number such as 16\n",
    );
    expect(calls).toEqual([]);
  });

  it('prints the controller’s field violations on one line and exits 1', async () => {
    answers = {
      createNode: () => {
        throw controllerError(status.INVALID_ARGUMENT, 'node.mac: bad; node.ip: bad', [
          badRequest(
            ['node.mac', 'must be a MAC address like 52:54:00:12:34:56'],
            ['node.ip', 'must be an IPv4 or IPv6 address like 10.0.0.5'],
          ),
          errorInfo('INVALID_ARGUMENT'),
        ]);
      },
    };

    const result = await bmctl(['node', 'add', ...seedNodeArgs.with(1, 'zz:zz')]);

    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'bmctl: invalid argument: node.mac: must be a MAC address like 52:54:00:12:34:56; ' +
        'node.ip: must be an IPv4 or IPv6 address like 10.0.0.5\n',
    });
  });
});

describe('switch add', () => {
  it('maps the seed positional arguments to CreateSwitchRequest', async () => {
    answers = {
      createSwitch: (req) =>
        Switch.fromPartial({ ...req.switch, id: 'sw-1', name: 'tor1', password: '', hasPassword: true }),
    };

    const result = await bmctl(['switch', 'add', '10.0.0.2', 'netops', 'sw-secret', 'juniper', 'rack 1 top']);

    expect(result.code).toBe(0);
    expect(calls[0]?.request).toEqual({
      switch: Switch.fromPartial({
        address: '10.0.0.2',
        username: 'netops',
        password: 'sw-secret',
        driver: 'juniper',
        description: 'rack 1 top',
      }),
    });
    expect(result.stdout).toContain('has_password          yes');
    expect(result.stdout).not.toContain('sw-secret');
  });

  it('takes --name and --password-file - (stdin) with the other fields as flags', async () => {
    answers = { createSwitch: (req) => Switch.fromPartial({ ...req.switch, id: 'sw-2', password: '' }) };

    const result = await bmctl(
      [
        'switch',
        'add',
        '--name=tor2',
        '--address=10.0.0.3:830',
        '--username=netops',
        '--password-file=-',
        '--driver=noop',
      ],
      { stdin: 'piped\r\n' },
    );

    expect(result.code).toBe(0);
    expect(calls[0]?.request).toEqual({
      switch: Switch.fromPartial({
        name: 'tor2',
        address: '10.0.0.3:830',
        username: 'netops',
        password: 'piped',
        driver: 'noop',
      }),
    });
  });

  it('says which switch does not exist', async () => {
    answers = {
      getSwitch: (req) => {
        throw controllerError(status.NOT_FOUND, `switch "${req.id}" does not exist`, [
          errorInfo('SWITCH_NOT_FOUND', { kind: 'switch', ref: req.id }),
        ]);
      },
    };

    expect(await bmctl(['switch', 'show', 'sw9'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: not found: switch "sw9" does not exist\n',
    });
  });
});

describe('lists', () => {
  it('fetches every page, applies the filters and shows switch names', async () => {
    const node = (name: string, mac: string) =>
      Node.fromPartial({
        id: `id-${name}`,
        name,
        mac,
        ip: '10.0.0.5',
        cpus: 8,
        ramMb: 16384,
        diskGb: 100,
        switchId: 'sw-1',
        switchPort: 'ge-0/0/5',
        powerDriver: 'ipmitool',
        provisionState: ProvisionState.PROVISION_STATE_AVAILABLE,
      });
    answers = {
      listNodes: (req) =>
        req.pageToken === ''
          ? { nodes: [node('n1', '52:54:00:00:00:01')], nextPageToken: 'page-2' }
          : { nodes: [node('n2', '52:54:00:00:00:02')], nextPageToken: '' },
      listSwitches: () => ({ switches: [tor1], nextPageToken: '' }),
    };

    const result = await bmctl([
      'node',
      'list',
      '--switch',
      'tor1',
      '--state',
      'available',
      '--maintenance',
      'false',
    ]);

    expect(result.code).toBe(0);
    const listNodes = calls.filter((c) => c.rpc === 'listNodes').map((c) => c.request);
    expect(listNodes).toEqual([
      {
        pageSize: 200,
        pageToken: '',
        switchId: 'tor1',
        provisionState: ProvisionState.PROVISION_STATE_AVAILABLE,
        maintenance: false,
      },
      {
        pageSize: 200,
        pageToken: 'page-2',
        switchId: 'tor1',
        provisionState: ProvisionState.PROVISION_STATE_AVAILABLE,
        maintenance: false,
      },
    ]);
    expect(result.stdout).toBe(
      [
        'NAME  MAC                IP        CPUS  RAM_MB  DISK_GB  STATE      MAINT  SWITCH  PORT      POWER_DRIVER',
        'n1    52:54:00:00:00:01  10.0.0.5  8     16384   100      available  no     tor1    ge-0/0/5  ipmitool',
        'n2    52:54:00:00:00:02  10.0.0.5  8     16384   100      available  no     tor1    ge-0/0/5  ipmitool',
        '',
      ].join('\n'),
    );
  });

  it('leaves filters unset when none are given', async () => {
    answers = {
      listNodes: () => ({ nodes: [], nextPageToken: '' }),
      listSwitches: () => ({ switches: [], nextPageToken: '' }),
    };

    expect((await bmctl(['node', 'list'])).code).toBe(0);
    expect(calls.find((c) => c.rpc === 'listNodes')?.request).toEqual({
      pageSize: 200,
      pageToken: '',
      switchId: '',
      provisionState: ProvisionState.PROVISION_STATE_UNSPECIFIED,
      maintenance: undefined,
    });
  });

  it('prints a JSON array with proto field names for scripts', async () => {
    answers = {
      listFlavors: () => ({
        flavors: [
          Flavor.fromPartial({
            id: 'f-1',
            name: 'bm.large',
            vcpus: 32,
            ramMb: 131072,
            diskGb: 900,
            extraSpecs: { 'capabilities:bootMode': 'uefi' },
            createTime: created,
          }),
        ],
        nextPageToken: '',
      }),
    };

    const result = await bmctl(['flavor', 'list', '-o', 'json']);

    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([
      {
        id: 'f-1',
        name: 'bm.large',
        vcpus: 32,
        ram_mb: 131072,
        disk_gb: 900,
        extra_specs: { 'capabilities:bootMode': 'uefi' },
        create_time: '2026-11-25T08:39:10.123Z',
        update_time: null,
      },
    ]);
  });
});

describe('other commands', () => {
  it('node maintenance sets the flag and reason through UpdateNode with a field mask', async () => {
    answers = {
      updateNode: (req) => Node.fromPartial({ ...req.node, name: 'n1' }),
      listSwitches: () => ({ switches: [], nextPageToken: '' }),
    };

    expect((await bmctl(['node', 'maintenance', 'n1', 'on', '--reason', 'replacing DIMM'])).code).toBe(0);
    expect((await bmctl(['node', 'maintenance', 'n1', 'off'])).code).toBe(0);

    const updates = calls.filter((c) => c.rpc === 'updateNode').map((c) => c.request);
    expect(updates).toEqual([
      {
        node: Node.fromPartial({ id: 'n1', maintenance: true, maintenanceReason: 'replacing DIMM' }),
        updateMask: ['maintenance', 'maintenance_reason'],
      },
      {
        node: Node.fromPartial({ id: 'n1', maintenance: false, maintenanceReason: '' }),
        updateMask: ['maintenance', 'maintenance_reason'],
      },
    ]);
  });

  it('aggregate set-metadata sets key=value and unsets a bare key', async () => {
    answers = {
      setAggregateMetadata: (req) => Aggregate.fromPartial({ name: req.aggregate, metadata: req.set }),
    };

    const result = await bmctl([
      'aggregate',
      'set-metadata',
      'agg1',
      'project_id=acme',
      'ssd=true',
      'gpu',
      'note=a=b',
    ]);

    expect(result.code).toBe(0);
    expect(calls[0]?.request).toEqual({
      aggregate: 'agg1',
      set: { project_id: 'acme', ssd: 'true', note: 'a=b' },
      unset: ['gpu'],
    });
  });

  it('flavor create, project create, aggregate create/add-host and host add build their requests', async () => {
    answers = {
      createFlavor: (req) => Flavor.fromPartial({ ...req.flavor }),
      createProject: (req) => Project.fromPartial({ ...req.project, id: 'p-1' }),
      createAggregate: (req) => Aggregate.fromPartial({ ...req.aggregate }),
      addAggregateHost: (req) => Aggregate.fromPartial({ name: req.aggregate, hosts: [req.host] }),
      createHost: (req) => Host.fromPartial({ ...req.host, id: 'h-1' }),
    };

    const results = [
      await bmctl(['flavor', 'create', 'bm.small', '--vcpus', '4', '--ram', '8192', '--disk', '100']),
      await bmctl([
        'flavor',
        'create',
        'bm.gpu',
        '--vcpus=8',
        '--ram=4',
        '--disk=1',
        '--spec',
        'gpu=a100',
        '--spec=x=',
      ]),
      await bmctl(['project', 'create', 'acme', '--isolated', '--description', 'Acme Corp']),
      await bmctl(['aggregate', 'create', 'rack1', 'zone-a']),
      await bmctl(['aggregate', 'add-host', 'rack1', 'hv1']),
      await bmctl(['host', 'add', 'hv1', '--vcpus', '64', '--ram', '262144', '--disk', '2000']),
    ];

    expect(results.map((r) => [r.code, r.stderr])).toEqual(results.map(() => [0, '']));
    expect(calls.map((c) => [c.rpc, c.request])).toEqual([
      [
        'createFlavor',
        { flavor: Flavor.fromPartial({ name: 'bm.small', vcpus: 4, ramMb: 8192, diskGb: 100 }) },
      ],
      [
        'createFlavor',
        {
          flavor: Flavor.fromPartial({
            name: 'bm.gpu',
            vcpus: 8,
            ramMb: 4,
            diskGb: 1,
            extraSpecs: { gpu: 'a100', x: '' },
          }),
        },
      ],
      [
        'createProject',
        {
          project: Project.fromPartial({ name: 'acme', isolated: true, description: 'Acme Corp' }),
        },
      ],
      [
        'createAggregate',
        { aggregate: Aggregate.fromPartial({ name: 'rack1', availabilityZone: 'zone-a' }) },
      ],
      ['addAggregateHost', { aggregate: 'rack1', host: 'hv1' }],
      [
        'createHost',
        {
          host: Host.fromPartial({ name: 'hv1', vcpus: 64, ramMb: 262144, diskGb: 2000 }),
        },
      ],
    ]);
  });

  it('delete confirms in table mode and prints nothing for scripts', async () => {
    answers = { deleteHost: () => ({}) };

    expect(await bmctl(['host', 'delete', 'hv1'])).toEqual({
      code: 0,
      stdout: 'host hv1 deleted\n',
      stderr: '',
    });
    expect(await bmctl(['host', 'delete', 'hv1', '--output', 'json'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect(calls.map((c) => c.request)).toEqual([{ id: 'hv1' }, { id: 'hv1' }]);
  });

  it('reports a missing required option as a one-line usage error', async () => {
    expect(await bmctl(['flavor', 'create', 'x', '--vcpus', '2', '--ram', '1'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "bmctl: required option '--disk <gb>' not specified\n",
    });
    expect(await bmctl(['node', 'lst'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "bmctl: unknown command 'lst' (Did you mean list?)\n",
    });
  });
});

describe('connection', () => {
  it('reads the admin token from $INGOT_DATA_DIR/admin.token, else ./ingot-data/admin.token', async () => {
    answers = {
      getHost: (req) => Host.fromPartial({ id: req.id, name: req.id }),
    };
    const dataDir = join(workDir, 'data');
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, 'admin.token'), 'from-data-dir\n', { mode: 0o600 });
    const cwd = join(workDir, 'cwd');
    await mkdir(join(cwd, 'ingot-data'), { recursive: true });
    await writeFile(join(cwd, 'ingot-data', 'admin.token'), 'from-cwd\n', { mode: 0o600 });

    await bmctl(['host', 'show', 'hv1'], { env: { INGOT_TOKEN: undefined, INGOT_DATA_DIR: dataDir }, cwd });
    await bmctl(['host', 'show', 'hv1'], { env: { INGOT_TOKEN: undefined }, cwd });
    await bmctl(['host', 'show', 'hv1', '--token', 'from-flag'], { cwd });
    await bmctl(['host', 'show', 'hv1'], {
      env: { INGOT_TOKEN: undefined },
      cwd: join(workDir, 'elsewhere'),
    });

    expect(calls.map((c) => c.authorization)).toEqual([
      'Bearer from-data-dir',
      'Bearer from-cwd',
      'Bearer from-flag',
      undefined,
    ]);
  });

  it('fails with one line when the token file cannot be read', async () => {
    const dataDir = join(workDir, 'unreadable');
    await mkdir(join(dataDir, 'admin.token'), { recursive: true });

    const result = await bmctl(['host', 'list'], {
      env: { INGOT_TOKEN: undefined, INGOT_DATA_DIR: dataDir },
    });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^bmctl: cannot read the admin token from .*admin\.token: EISDIR.*give --token\n$/,
    );
    expect(calls).toEqual([]);
  });

  it('says the controller cannot be reached when nothing listens', async () => {
    const closed = new Server();
    const port = await listen(closed);
    closed.forceShutdown();

    expect(await bmctl(['switch', 'list', '--endpoint', `127.0.0.1:${port}`])).toEqual({
      code: 1,
      stdout: '',
      stderr: `bmctl: cannot reach the controller at 127.0.0.1:${port} (is it running?)\n`,
    });
  });
});

describe('error lines', () => {
  function serviceError(code: status, details: string, metadata = new Metadata()): ServiceError {
    return Object.assign(new Error(`${code} ${details}`), { code, details, metadata });
  }

  it('joins BadRequest field violations with "; "', () => {
    const { metadata } = controllerError(status.INVALID_ARGUMENT, 'ignored when violations exist', [
      badRequest(
        ['node.mac', 'must be a MAC address like 52:54:00:12:34:56'],
        ['node.cpus', 'must be at least 1'],
      ),
    ]);
    expect(describeServiceError(serviceError(status.INVALID_ARGUMENT, 'x', metadata), 'ctl:7700')).toBe(
      'invalid argument: node.mac: must be a MAC address like 52:54:00:12:34:56; node.cpus: must be at least 1',
    );
  });

  it('uses the status message otherwise, on one line', () => {
    const { metadata } = controllerError(
      status.ALREADY_EXISTS,
      'a node with mac "52:54:00:12:34:56"\nalready exists',
      [errorInfo('NODE_ALREADY_EXISTS')],
    );
    expect(describeServiceError(serviceError(status.ALREADY_EXISTS, 'x', metadata), 'ctl:7700')).toBe(
      'already exists: a node with mac "52:54:00:12:34:56" already exists',
    );
  });

  it('explains transport failures and missing credentials', () => {
    expect(
      describeServiceError(serviceError(status.UNAVAILABLE, 'No connection established'), 'ctl:7700'),
    ).toBe('cannot reach the controller at ctl:7700 (is it running?)');
    expect(
      describeServiceError(serviceError(status.UNAUTHENTICATED, 'missing bearer token'), 'ctl:7700'),
    ).toBe(
      'unauthenticated: missing bearer token (give --token, set INGOT_TOKEN, or run where $INGOT_DATA_DIR/admin.token is readable)',
    );
  });
});

describe('parsing and formatting', () => {
  it('parses nova-style metadata changes; the last mention of a key wins', () => {
    expect(parseMetadataChanges(['a=1', 'b', 'c=', 'd=x=y', 'b=2', 'a'])).toEqual({
      set: { c: '', d: 'x=y', b: '2' },
      unset: ['a'],
    });
    expect(() => parseMetadataChanges(['=1'])).toThrow('needs a key');
  });

  it('names provision states the way tables print them and --state accepts them', () => {
    expect(provisionStateName(ProvisionState.PROVISION_STATE_WAIT_CALL_BACK)).toBe('wait-call-back');
    for (const text of ['wait-call-back', 'WAIT_CALL_BACK', 'PROVISION_STATE_WAIT_CALL_BACK']) {
      expect(parseProvisionState(text)).toBe(ProvisionState.PROVISION_STATE_WAIT_CALL_BACK);
    }
    expect(() => parseProvisionState('unspecified')).toThrow('expected one of enroll, manageable');
  });

  it('aligns table columns, shows empty cells as - and keeps lines free of trailing blanks', () => {
    expect(
      renderTable(
        ['NAME', 'DESCRIPTION'],
        [
          ['a', ''],
          ['longer', 'two\nlines'],
        ],
      ),
    ).toBe('NAME    DESCRIPTION\na       -\nlonger  two lines\n');
  });

  it('converts a node to proto JSON: snake_case, every field, enum names, no password field', () => {
    const node = Node.fromPartial({ name: 'n1', ramMb: 4096, hasBmcPassword: true, createTime: created });
    const json = nodeView().json(node);

    expect(json).toMatchObject({
      name: 'n1',
      ram_mb: 4096,
      has_bmc_password: true,
      maintenance: false,
      provision_state: 'PROVISION_STATE_UNSPECIFIED',
      create_time: '2026-11-25T08:39:10.123Z',
      update_time: null,
    });
    expect(Object.keys(json)).not.toContain('bmc_password');
    expect(Object.keys(json)).toHaveLength(33); // 26 + the network and netboot fields (30-35) + root_disk (50)
    expect(toProtoJson({ extraSpecs: { camelKey: 'v' } })).toEqual({ extra_specs: { camelKey: 'v' } });
  });
});
