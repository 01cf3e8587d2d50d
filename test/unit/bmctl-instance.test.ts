import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorInfo } from '../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../build/gen/google/rpc/status.ts';
import { Instance, InstanceServiceService, InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { Flavor, InventoryServiceService, Project } from '../../build/gen/ingot/v1/inventory.ts';
import { SchedulerServiceService, SchedulingRequest } from '../../build/gen/ingot/v1/scheduler.ts';
import { runBmctl } from '../../tools/bmctl/cli.ts';
import { renderTrace } from '../../tools/bmctl/commands/schedule.ts';
import type { ControllerRpc, RequestOf, ResponseOf } from '../../tools/bmctl/connection.ts';

// A real grpc-js server with the controller's three services that records what bmctl sends and
// answers from a per-test script.

type Answers = { [K in ControllerRpc]?: (request: RequestOf<K>) => ResponseOf<K> };

let server: Server;
let endpoint: string;
let answers: Answers = {};
let calls: { rpc: ControllerRpc; request: unknown }[] = [];

function recording(service: ServiceDefinition): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const rpc of Object.keys(service) as ControllerRpc[]) {
    impl[rpc] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      calls.push({ rpc, request: call.request });
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

/** An error as the controller sends it: a status plus ErrorInfo in `grpc-status-details-bin`. */
function controllerError(code: status, reason: string, message: string): ServerErrorResponse {
  const info = ErrorInfo.encode({ reason, domain: 'ingot', metadata: {} }).finish();
  const details = [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }];
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(Status.encode({ code, message, details }).finish()));
  return Object.assign(new Error(message), { code, details: message, metadata });
}

async function bmctl(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runBmctl(argv, {
    env: { INGOT_ENDPOINT: endpoint, INGOT_TOKEN: 'test-token' },
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
    readStdin: async () => '',
    cwd: '/nonexistent',
  });
  return { code, stdout, stderr };
}

beforeAll(async () => {
  server = new Server();
  server.addService(InventoryServiceService, recording(InventoryServiceService));
  server.addService(InstanceServiceService, recording(InstanceServiceService));
  server.addService(SchedulerServiceService, recording(SchedulerServiceService));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  endpoint = `127.0.0.1:${port}`;
});

afterAll(() => {
  server?.forceShutdown();
});

afterEach(() => {
  answers = {};
  calls = [];
});

const secure = Project.fromPartial({ id: 'p-1', name: 'secure', isolated: true });
const small = Flavor.fromPartial({ id: 'f-1', name: 'bm.small', vcpus: 4, ramMb: 8192, diskGb: 100 });
const names = {
  listProjects: () => ({ projects: [secure], nextPageToken: '' }),
  listFlavors: () => ({ flavors: [small], nextPageToken: '' }),
} satisfies Answers;

/** Answers CreateInstance the way the controller does: on bm1, scheduled. */
function bootOnBm1(request: RequestOf<'createInstance'>): Instance {
  return Instance.fromPartial({
    id: 'i-1',
    name: request.name,
    projectId: 'p-1',
    flavorId: 'f-1',
    image: request.request?.image,
    hints: request.request?.hints,
    state: InstanceState.INSTANCE_STATE_SCHEDULED,
    hostKind: 'node',
    hostId: 'n-1',
    hostName: 'bm1',
    vcpus: 4,
    ramMb: 8192,
    diskGb: 100,
  });
}

describe('boot', () => {
  it('maps the seed’s arguments to CreateInstance and shows names, looked up before booting', async () => {
    answers = { ...names, createInstance: bootOnBm1 };

    const result = await bmctl(
      ...['boot', '--image', 'ubuntu-24.04', '--flavor', 'bm.small', '--hint', 'compute_type=bare_metal'],
      ...['--hint', 'note=a=b', '--availability-zone', 'zone-a', '--project', 'secure', 'db1'],
    );

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(calls.at(-1)).toEqual({
      rpc: 'createInstance',
      request: {
        name: 'db1',
        request: SchedulingRequest.fromPartial({
          project: 'secure',
          flavor: 'bm.small',
          image: 'ubuntu-24.04',
          hints: { compute_type: 'bare_metal', note: 'a=b' },
          availabilityZone: 'zone-a',
        }),
      },
    });
    expect(
      calls
        .slice(0, 2)
        .map((c) => c.rpc)
        .sort(),
    ).toEqual(['listFlavors', 'listProjects']);
    expect(result.stdout).toMatch(/^project +secure$/m);
    expect(result.stdout).toMatch(/^project_id +p-1$/m);
    expect(result.stdout).toMatch(/^flavor +bm\.small$/m);
    expect(result.stdout).toMatch(/^host +node\/bm1$/m);
    expect(result.stdout).toMatch(/^state +scheduled$/m);
    expect(result.stdout).toMatch(/^hints +compute_type=bare_metal, note=a=b$/m);
  });

  it('prints snake_case JSON with the state by name, without looking names up', async () => {
    answers = { createInstance: bootOnBm1 };

    const result = await bmctl('boot', '--image=img', '--flavor=f-1', '--project=p-1', 'db1', '-o', 'json');

    expect(result.code).toBe(0);
    expect(calls.map((c) => c.rpc)).toEqual(['createInstance']);
    expect(JSON.parse(result.stdout)).toMatchObject({
      id: 'i-1',
      project_id: 'p-1',
      flavor_id: 'f-1',
      host_kind: 'node',
      host_name: 'bm1',
      state: 'INSTANCE_STATE_SCHEDULED',
      ram_mb: 8192,
      availability_zone: '',
    });
  });

  it('shows ids when the token may not list projects and flavors (a project member’s)', async () => {
    const denied = () => {
      throw controllerError(status.PERMISSION_DENIED, 'PERMISSION_DENIED', 'needs the admin role');
    };
    answers = { listProjects: denied, listFlavors: denied, createInstance: bootOnBm1 };

    const result = await bmctl('boot', '--image=img', '--flavor=bm.small', 'db1');

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(calls.at(-1)?.request).toMatchObject({ request: { project: '' } });
    expect(result.stdout).toMatch(/^project +p-1$/m);
    expect(result.stdout).toMatch(/^flavor +f-1$/m);
  });

  it('says `no valid host` with the scheduler’s reason on one line, exit 1', async () => {
    const reason =
      'NodeStateFilter rejected the last 1 host(s); closest: bm1 (already claimed by instance i-1)';
    answers = {
      ...names,
      createInstance: () => {
        throw controllerError(status.RESOURCE_EXHAUSTED, 'NO_VALID_HOST', `no valid host: ${reason}`);
      },
    };
    expect(await bmctl('boot', '--image=img', '--flavor=bm.small', '--project=secure', 'db2')).toEqual({
      code: 1,
      stdout: '',
      stderr: `bmctl: no valid host: ${reason}\n`,
    });

    answers.createInstance = () => {
      throw controllerError(status.RESOURCE_EXHAUSTED, 'NO_VALID_HOST', 'every candidate was claimed');
    };
    expect((await bmctl('boot', '--image=img', '--flavor=bm.small', 'db2')).stderr).toBe(
      'bmctl: no valid host: every candidate was claimed\n',
    );
  });

  it('refuses a missing --image or a hint without `=` before calling the controller', async () => {
    expect(await bmctl('boot', '--flavor', 'bm.small', 'db1')).toEqual({
      code: 2,
      stdout: '',
      stderr: "bmctl: required option '--image <image>' not specified\n",
    });
    expect(await bmctl('boot', '--image=img', '--flavor=bm.small', '--hint', 'bare_metal', 'db1')).toEqual({
      code: 2,
      stdout: '',
      stderr: 'bmctl: --hint "bare_metal" must look like key=value\n',
    });
    expect(calls).toEqual([]);
  });
});

describe('instance', () => {
  it('list fetches every page of the project’s instances and shows names', async () => {
    const instance = (name: string) =>
      bootOnBm1({ name, request: SchedulingRequest.fromPartial({ image: 'img' }) });
    answers = {
      ...names,
      listInstances: (req) =>
        req.pageToken === ''
          ? { instances: [instance('db1')], nextPageToken: 'page-2' }
          : { instances: [instance('db2')], nextPageToken: '' },
    };

    const result = await bmctl('instance', 'list', '--project', 'secure');

    expect(result.code).toBe(0);
    expect(calls.filter((c) => c.rpc === 'listInstances').map((c) => c.request)).toEqual([
      { pageSize: 200, pageToken: '', project: 'secure' },
      { pageSize: 200, pageToken: 'page-2', project: 'secure' },
    ]);
    expect(result.stdout).toBe(
      [
        'NAME  STATE      HOST      FLAVOR    IMAGE  PROJECT',
        'db1   scheduled  node/bm1  bm.small  img    secure',
        'db2   scheduled  node/bm1  bm.small  img    secure',
        '',
      ].join('\n'),
    );
  });

  it('show and delete pass the id and the project a name is looked up in', async () => {
    answers = {
      getInstance: (req) => Instance.fromPartial({ id: 'i-1', name: req.id }),
      deleteInstance: () => ({}),
    };

    expect((await bmctl('instance', 'show', 'db1', '--project', 'secure', '-o', 'json')).code).toBe(0);
    expect(await bmctl('instance', 'delete', 'db1', '--project', 'secure')).toEqual({
      code: 0,
      stdout: 'instance db1 deleted\n',
      stderr: '',
    });
    expect(await bmctl('instance', 'delete', 'i-1', '-o', 'json')).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });

    expect(calls.map((c) => [c.rpc, c.request])).toEqual([
      ['getInstance', { id: 'db1', project: 'secure' }],
      ['deleteInstance', { id: 'db1', project: 'secure' }],
      ['deleteInstance', { id: 'i-1', project: '' }],
    ]);
  });
});

describe('schedule', () => {
  const trace = [
    {
      filter: 'PlacementFilter',
      hostsIn: 14,
      hostsOut: 2,
      rejected: [
        { host: 'hv1', reason: 'a hypervisor host; compute_type=bare_metal asks for a bare-metal node' },
        { host: 'bm10', reason: 'in aggregate secure-agg, dedicated to another project' },
      ],
    },
    { filter: 'NodeStateFilter', hostsIn: 2, hostsOut: 2, rejected: [] },
  ];

  it('maps the options to SelectDestinations and prints destinations, then the trace', async () => {
    answers = {
      selectDestinations: () => ({
        destinations: [
          { kind: 'node', id: 'n-1', name: 'bm1', weight: 0 },
          { kind: 'node', id: 'n-2', name: 'bm2', weight: -1.23456 },
        ],
        candidates: 2,
        noValidHost: '',
        trace,
      }),
    };

    const result = await bmctl(
      ...['schedule', '--flavor', 'bm.small', '--hint', 'compute_type=bare_metal', '--project', 'acme'],
      ...['--count', '2', '--explain'],
    );

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(calls[0]?.request).toEqual({
      request: SchedulingRequest.fromPartial({
        project: 'acme',
        flavor: 'bm.small',
        hints: { compute_type: 'bare_metal' },
      }),
      count: 2,
      explain: true,
    });
    expect(result.stdout).toBe(
      [
        'KIND  NAME  WEIGHT',
        'node  bm1   0.000',
        'node  bm2   -1.235',
        '',
        'PlacementFilter  14 → 2',
        '  hv1   a hypervisor host; compute_type=bare_metal asks for a bare-metal node',
        '  bm10  in aggregate secure-agg, dedicated to another project',
        '  … and 10 more',
        'NodeStateFilter  2 → 2',
        '',
      ].join('\n'),
    );
  });

  it('leaves count and explain to the controller’s defaults when not given', async () => {
    answers = {
      selectDestinations: () => ({ destinations: [], candidates: 0, noValidHost: 'x', trace: [] }),
    };

    expect((await bmctl('schedule', '--flavor', 'bm.small')).code).toBe(0);
    expect(calls[0]?.request).toEqual({
      request: SchedulingRequest.fromPartial({ flavor: 'bm.small' }),
      count: 0,
      explain: false,
    });
  });

  it('prints the no_valid_host line as the answer, exit 0; JSON prints the whole response', async () => {
    const noValidHost =
      'no valid host: NodeStateFilter rejected the last 2 host(s); closest: bm1 (in maintenance)';
    answers = {
      selectDestinations: () => ({ destinations: [], candidates: 0, noValidHost, trace: trace.slice(0, 1) }),
    };

    const table = await bmctl('schedule', '--flavor', 'bm.small', '--project', 'acme', '--explain');
    expect(table).toMatchObject({ code: 0, stderr: '' });
    expect(table.stdout.split('\n').slice(0, 3)).toEqual([noValidHost, '', 'PlacementFilter  14 → 2']);

    const json = await bmctl('schedule', '--flavor', 'bm.small', '--explain', '-o', 'json');
    expect(JSON.parse(json.stdout)).toEqual({
      destinations: [],
      candidates: 0,
      no_valid_host: noValidHost,
      trace: [
        {
          filter: 'PlacementFilter',
          hosts_in: 14,
          hosts_out: 2,
          rejected: trace[0]?.rejected,
        },
      ],
    });
  });

  it('rejects a non-numeric --count as a usage error', async () => {
    expect(await bmctl('schedule', '--flavor', 'bm.small', '--count', 'two')).toEqual({
      code: 2,
      stdout: '',
      stderr: "bmctl: option '--count <n>' argument 'two' is invalid. expected a whole number such as 16\n",
    });
  });

  it('renders an empty trace as nothing', () => {
    expect(renderTrace([])).toBe('');
  });
});
