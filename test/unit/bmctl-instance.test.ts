import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorInfo } from '../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../build/gen/google/rpc/status.ts';
import {
  Instance,
  type InstanceEvent,
  InstanceServiceService,
  InstanceState,
  type WatchInstanceRequest,
} from '../../build/gen/ingot/v1/instance.ts';
import { Flavor, InventoryServiceService, Project } from '../../build/gen/ingot/v1/inventory.ts';
import { SchedulerServiceService, SchedulingRequest } from '../../build/gen/ingot/v1/scheduler.ts';
import { type BmctlIo, runBmctl } from '../../tools/bmctl/cli.ts';
import { renderTrace } from '../../tools/bmctl/commands/schedule.ts';
import type {
  ControllerRpc,
  ControllerStreamRpc,
  RequestOf,
  ResponseOf,
} from '../../tools/bmctl/connection.ts';

// A real grpc-js server with the controller's three services that records what bmctl sends and
// answers from a per-test script: unary calls from `answers`, WatchInstance from `watches` (the
// events it sends for the requested id, then the end of the stream, or the error it throws).

type Answers = { [K in ControllerRpc]?: (request: RequestOf<K>) => ResponseOf<K> };
type Watches = (request: WatchInstanceRequest) => InstanceEvent[];

let server: Server;
let endpoint: string;
let answers: Answers = {};
let watches: Watches | undefined;
let calls: { rpc: ControllerRpc | ControllerStreamRpc; request: unknown }[] = [];

function streaming(rpc: ControllerStreamRpc) {
  return (call: ServerWritableStream<WatchInstanceRequest, InstanceEvent>) => {
    calls.push({ rpc, request: call.request });
    try {
      if (watches === undefined) throw { code: status.UNIMPLEMENTED, details: `${rpc} is not scripted` };
      for (const event of watches(call.request)) call.write(event);
      call.end();
    } catch (err) {
      call.emit('error', err as ServerErrorResponse);
    }
  };
}

function recording(service: ServiceDefinition): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const rpc of Object.keys(service) as ControllerRpc[]) {
    if (service[rpc]?.responseStream) {
      impl[rpc] = streaming(rpc as string as ControllerStreamRpc);
      continue;
    }
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
  return bmctlWith({}, ...argv);
}

/** bmctl with surroundings of the test's own, e.g. a terminal or a clock. */
async function bmctlWith(
  io: Partial<BmctlIo>,
  ...argv: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runBmctl(argv, {
    ...io,
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
  watches = undefined;
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
    networkId: request.network ? 'net-1' : '',
    networkName: request.network,
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
        network: '',
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
      bootOnBm1({ name, request: SchedulingRequest.fromPartial({ image: 'img' }), network: '' });
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
    // A hypervisor placement: released at once, the answer is the instance as it was.
    const placement = (id: string) =>
      Instance.fromPartial({
        id: 'i-1',
        name: id,
        hostKind: 'host',
        state: InstanceState.INSTANCE_STATE_SCHEDULED,
      });
    answers = { getInstance: (req) => placement(req.id), deleteInstance: (req) => placement(req.id) };

    expect((await bmctl('instance', 'show', 'db1', '--project', 'secure', '-o', 'json')).code).toBe(0);
    expect(await bmctl('instance', 'delete', 'db1', '--project', 'secure', '-o', 'json')).toMatchObject({
      code: 0,
      stderr: '',
    });
    answers = { ...names, deleteInstance: (req) => placement(req.id) };
    expect(await bmctl('instance', 'delete', 'i-1')).toEqual({
      code: 0,
      stdout: 'instance i-1 deleted\n',
      stderr: '',
    });

    expect(calls.filter((c) => !c.rpc.startsWith('list')).map((c) => [c.rpc, c.request])).toEqual([
      ['getInstance', { id: 'db1', project: 'secure' }],
      ['deleteInstance', { id: 'db1', project: 'secure', fullWipe: false }],
      ['deleteInstance', { id: 'i-1', project: '', fullWipe: false }],
    ]);
  });
});

const GiB = 2 ** 30;
const S = InstanceState;

/** web1 on bm1 in project secure, on network tenant-a, with `fields` on top. */
function web1(state: InstanceState, fields: Partial<Instance> = {}): Instance {
  return Instance.fromPartial({
    id: 'i-1',
    name: 'web1',
    projectId: 'p-1',
    flavorId: 'f-1',
    image: 'ubuntu-24.04',
    state,
    hostKind: 'node',
    hostId: 'n-1',
    hostName: 'bm1',
    networkId: 'net-1',
    networkName: 'tenant-a',
    ...fields,
  });
}

function event(instance: Instance | undefined, more: Partial<InstanceEvent> = {}): InstanceEvent {
  return { instance, progressOnly: false, deleted: false, ...more };
}

/** `phase` at `doneGiB` of 4 GiB, 512 MiB/s. */
function writing(doneGiB: number, phase = 'writing') {
  return { phase, bytesDone: doneGiB * GiB, bytesTotal: 4 * GiB, rateBytesPerSecond: 512 << 20, message: '' };
}

/** A clock that advances half a second on every reading, from 08:40:00 UTC. */
function ticking(): () => number {
  let now = Date.parse('2026-11-25T08:40:00Z');
  return () => {
    now += 500;
    return now;
  };
}

/** A deploy as WatchInstance reports it: the steps, progress every half second, then ACTIVE. */
const deployEvents = [
  event(web1(S.INSTANCE_STATE_SCHEDULED)),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'service-network' })),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'netboot' })),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'netboot', retries: 1 })),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'deploying', progress: writing(0) })),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'deploying', progress: writing(1) }), {
    progressOnly: true,
  }),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'deploying', progress: writing(2) }), {
    progressOnly: true,
  }),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'deploying', progress: writing(3) }), {
    progressOnly: true,
  }),
  event(web1(S.INSTANCE_STATE_DEPLOYING, { step: 'tenant-network' })),
  event(web1(S.INSTANCE_STATE_ACTIVE)),
];

describe('boot --network, several names, --wait', () => {
  it('creates one instance per name in parallel with the network; a failed one is named, exit 1', async () => {
    answers = {
      ...names,
      createInstance: (req) => {
        if (req.name === 'web2') {
          throw controllerError(
            status.RESOURCE_EXHAUSTED,
            'NO_VALID_HOST',
            'no valid host: every node is claimed',
          );
        }
        return bootOnBm1(req);
      },
    };

    const result = await bmctl(
      ...['boot', '--image', 'img', '--flavor', 'bm.small', '--network', 'tenant-a'],
      ...['web1', 'web2', 'web3'],
    );

    const creates = calls.filter((c) => c.rpc === 'createInstance').map((c) => c.request);
    expect(creates).toEqual(
      ['web1', 'web2', 'web3'].map((name) => ({
        name,
        request: SchedulingRequest.fromPartial({ flavor: 'bm.small', image: 'img' }),
        network: 'tenant-a',
      })),
    );
    expect(result).toEqual({
      code: 1,
      stdout: [
        'NAME  STATE      HOST      FLAVOR    IMAGE  PROJECT',
        'web1  scheduled  node/bm1  bm.small  img    secure',
        'web3  scheduled  node/bm1  bm.small  img    secure',
        '',
      ].join('\n'),
      stderr:
        'bmctl: instance web2: no valid host: every node is claimed\n' +
        'bmctl: 1 of 3 instances failed: web2\n',
    });
  });

  it('one name prints the instance with its network, as before', async () => {
    answers = { ...names, createInstance: bootOnBm1 };

    const result = await bmctl('boot', '--image=img', '--flavor=bm.small', '--network=tenant-a', 'db1');

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(calls.at(-1)?.request).toMatchObject({ name: 'db1', network: 'tenant-a' });
    expect(result.stdout).toMatch(/^network +tenant-a$/m);
    expect(result.stdout).toMatch(/^network_id +net-1$/m);
  });

  it('--wait follows the deploy: a line per step, progress at most once a second, exit 0 when active', async () => {
    answers = { ...names, createInstance: (req) => web1(S.INSTANCE_STATE_SCHEDULED, { name: req.name }) };
    watches = () => deployEvents;

    const result = await bmctlWith(
      { now: ticking() },
      ...['boot', '--image=ubuntu-24.04', '--flavor=bm.small', '--network=tenant-a', '--wait', 'web1'],
    );

    expect(calls.at(-1)).toEqual({
      rpc: 'watchInstance',
      request: { id: 'i-1', project: '', untilDeleted: false },
    });
    // The second line is the seed instance again (not repeated); progress reports half a second
    // apart are thinned to one a second.
    expect(result).toEqual({
      code: 0,
      stdout: [
        '08:40:00 web1  scheduled  node/bm1 on tenant-a',
        '08:40:01 web1  deploying  service-network',
        '08:40:02 web1  deploying  netboot',
        '08:40:02 web1  deploying  netboot (retry 1)',
        '08:40:03 web1  deploying  deploying  writing 0 B / 4.0 GiB (0%) 512.0 MiB/s ETA 8s',
        '08:40:04 web1  deploying  deploying  writing 2.0 GiB / 4.0 GiB (50%) 512.0 MiB/s ETA 4s',
        '08:40:05 web1  deploying  tenant-network',
        '08:40:05 web1  active     node/bm1 on tenant-a',
        '',
      ].join('\n'),
      stderr: '',
    });
  });

  it('--wait on a terminal redraws the line in place with a progress bar', async () => {
    answers = { ...names, createInstance: (req) => web1(S.INSTANCE_STATE_SCHEDULED, { name: req.name }) };
    watches = () => [deployEvents[6] as InstanceEvent, deployEvents[9] as InstanceEvent];

    const result = await bmctlWith(
      { stdoutIsTty: true, stdoutColumns: 80 },
      ...['boot', '--image=ubuntu-24.04', '--flavor=bm.small', '--wait', 'web1'],
    );

    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')).toEqual([
      '\r\u001b[2Kweb1  scheduled  node/bm1 on tenant-a',
      // Cut at 79 columns, so that the cursor stays on the block.
      '\u001b[1A\r\u001b[2Kweb1  deploying  deploying  [##########..........]  writing 2.0 GiB / 4.0 GiB (',
      '\u001b[1A\r\u001b[2Kweb1  active     node/bm1 on tenant-a',
      '',
    ]);
  });

  it('--wait exits 1 with the step and the reason when the deploy fails', async () => {
    answers = { ...names, createInstance: (req) => web1(S.INSTANCE_STATE_SCHEDULED, { name: req.name }) };
    const reason = 'power cycle 2 of 2: the agent did not call in within 120s; check the node’s console';
    watches = () => [
      ...deployEvents.slice(0, 3),
      event(web1(S.INSTANCE_STATE_ERROR, { step: 'netboot', reason, retries: 2 })),
    ];

    const result = await bmctlWith(
      { now: ticking() },
      'boot',
      '--image=img',
      '--flavor=bm.small',
      '--wait',
      'web1',
    );

    expect(result.code).toBe(1);
    expect(result.stdout.split('\n').at(-2)).toBe(`08:40:02 web1  error      netboot: ${reason}`);
    expect(result.stderr).toBe(`bmctl: instance web1 failed in step netboot: ${reason}\n`);
  });

  it('--wait with several names shows a line per instance and names each failure after the others finished', async () => {
    answers = {
      ...names,
      createInstance: (req) => web1(S.INSTANCE_STATE_SCHEDULED, { id: `i-${req.name}`, name: req.name }),
    };
    watches = (req) =>
      req.id === 'i-web2'
        ? [
            event(
              web1(S.INSTANCE_STATE_ERROR, {
                id: 'i-web2',
                name: 'web2',
                step: 'deploying',
                reason: 'disk full',
              }),
            ),
          ]
        : [event(web1(S.INSTANCE_STATE_ACTIVE, { id: req.id, name: req.id.slice(2) }))];

    const result = await bmctl('boot', '--image=img', '--flavor=bm.small', '--wait', 'web1', 'web2', 'web3');

    expect(result.code).toBe(1);
    const lines = result.stdout.split('\n').map((line) => line.slice(9));
    expect(lines).toEqual(
      expect.arrayContaining([
        'web1  active     node/bm1 on tenant-a',
        'web2  error      deploying: disk full',
        'web3  active     node/bm1 on tenant-a',
      ]),
    );
    expect(result.stderr).toBe(
      'bmctl: instance web2 failed in step deploying: disk full\nbmctl: 1 of 3 instances failed: web2\n',
    );
  });

  it('--wait -o json prints the instances as they ended, without a display', async () => {
    answers = { createInstance: (req) => web1(S.INSTANCE_STATE_SCHEDULED, { name: req.name }) };
    watches = () => deployEvents;

    const result = await bmctl('boot', '--image=img', '--flavor=f-1', '--wait', 'web1', '-o', 'json');

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(result.stdout)).toMatchObject({ name: 'web1', state: 'INSTANCE_STATE_ACTIVE' });
  });
});

describe('instance watch, delete --wait, reboot, show', () => {
  it('watch passes the id, project and --until-deleted, and ends with the stream', async () => {
    watches = () => [
      event(web1(S.INSTANCE_STATE_ACTIVE)),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'wiping', progress: writing(1, 'wiping') })),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'release' })),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'release' }), { deleted: true }),
    ];

    const result = await bmctlWith(
      { now: ticking() },
      ...['instance', 'watch', 'web1', '--project', 'secure', '--until-deleted'],
    );

    expect(calls).toEqual([
      { rpc: 'watchInstance', request: { id: 'web1', project: 'secure', untilDeleted: true } },
    ]);
    expect(result).toEqual({
      code: 0,
      stdout: [
        '08:40:00 web1  active     node/bm1 on tenant-a',
        '08:40:01 web1  deleting   wiping  wiping 1.0 GiB / 4.0 GiB (25%) 512.0 MiB/s ETA 6s',
        '08:40:01 web1  deleting   release',
        '08:40:02 web1  deleted',
        '',
      ].join('\n'),
      stderr: '',
    });
  });

  it('watch exits 1 when the instance ends in error, or when the controller refuses', async () => {
    watches = () => [event(web1(S.INSTANCE_STATE_ERROR, { reason: 'image not found' }))];
    expect((await bmctl('instance', 'watch', 'web1')).stderr).toBe(
      'bmctl: instance web1 failed: image not found\n',
    );

    watches = () => {
      throw controllerError(status.NOT_FOUND, 'NOT_FOUND', 'instance "web9" not found');
    };
    expect(await bmctl('instance', 'watch', 'web9')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: watching instance web9 failed: not found: instance "web9" not found\n',
    });
  });

  it('watch -o json prints every event', async () => {
    watches = () => deployEvents.slice(4, 6);

    const result = await bmctl('instance', 'watch', 'i-1', '-o', 'json');

    expect(result.code).toBe(1); // the stream ended while deploying
    const printed = result.stdout.split(/\n(?=\{)/).map((text) => JSON.parse(text));
    expect(printed).toHaveLength(2);
    expect(printed[1]).toMatchObject({
      progress_only: true,
      deleted: false,
      instance: { step: 'deploying', progress: { phase: 'writing', bytes_done: GiB, bytes_total: 4 * GiB } },
    });
    expect(result.stderr).toBe('bmctl: the watch of instance i-1 ended while it was deploying\n');
  });

  it('delete prints the deleting instance; --full-wipe goes with the request', async () => {
    answers = { deleteInstance: () => web1(S.INSTANCE_STATE_DELETING) };

    const result = await bmctl('instance', 'delete', 'web1', '--full-wipe', '-o', 'json');

    expect(calls).toEqual([{ rpc: 'deleteInstance', request: { id: 'web1', project: '', fullWipe: true } }]);
    expect(JSON.parse(result.stdout)).toMatchObject({ id: 'i-1', state: 'INSTANCE_STATE_DELETING' });
  });

  it('delete --wait follows the wipe until the instance is gone', async () => {
    answers = { ...names, deleteInstance: () => web1(S.INSTANCE_STATE_DELETING) };
    watches = () => [
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'wipe-task' })),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'wiping', progress: writing(0, 'wiping') })),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'wiping', progress: writing(4, 'wiping') }), {
        progressOnly: true,
      }),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'release' })),
      event(web1(S.INSTANCE_STATE_DELETING, { step: 'release' }), { deleted: true }),
    ];

    const result = await bmctlWith(
      { now: ticking() },
      ...['instance', 'delete', 'web1', '--project', 'secure', '--full-wipe', '--wait'],
    );

    expect(calls.filter((c) => !c.rpc.startsWith('list'))).toEqual([
      { rpc: 'deleteInstance', request: { id: 'web1', project: 'secure', fullWipe: true } },
      { rpc: 'watchInstance', request: { id: 'i-1', project: '', untilDeleted: false } },
    ]);
    expect(result).toEqual({
      code: 0,
      stdout: [
        '08:40:00 web1  deleting',
        '08:40:01 web1  deleting   wipe-task',
        '08:40:01 web1  deleting   wiping  wiping 0 B / 4.0 GiB (0%) 512.0 MiB/s ETA 8s',
        // 100% came half a second later: thinned out.
        '08:40:02 web1  deleting   release',
        '08:40:03 web1  deleted',
        '',
      ].join('\n'),
      stderr: '',
    });
  });

  it('delete --wait exits 1 with the reason when the teardown fails; a vanished instance counts as deleted', async () => {
    answers = { ...names, deleteInstance: () => web1(S.INSTANCE_STATE_DELETING) };
    watches = () => [
      event(web1(S.INSTANCE_STATE_ERROR, { step: 'wiping', reason: 'wipe failed: I/O error' })),
    ];
    expect((await bmctl('instance', 'delete', 'web1', '--wait')).stderr).toBe(
      'bmctl: instance web1 failed in step wiping: wipe failed: I/O error\n',
    );

    watches = () => {
      throw controllerError(status.NOT_FOUND, 'NOT_FOUND', 'instance "i-1" not found');
    };
    expect(await bmctlWith({ now: ticking() }, 'instance', 'delete', 'web1', '--wait')).toEqual({
      code: 0,
      stdout: '08:40:00 web1  deleting\n08:40:01 web1  deleted\n',
      stderr: '',
    });
  });

  it('reboot --hard passes the flag and prints the instance', async () => {
    answers = { ...names, rebootInstance: () => web1(S.INSTANCE_STATE_ACTIVE) };

    const result = await bmctl('instance', 'reboot', 'web1', '--project', 'secure', '--hard');

    expect(calls.filter((c) => !c.rpc.startsWith('list'))).toEqual([
      { rpc: 'rebootInstance', request: { id: 'web1', project: 'secure', hard: true } },
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^state +active$/m);

    answers.rebootInstance = () => {
      throw controllerError(
        status.FAILED_PRECONDITION,
        'INSTANCE_NOT_ACTIVE',
        'instance web1 is deploying; only ACTIVE bare-metal instances can be rebooted',
      );
    };
    expect((await bmctl('instance', 'reboot', 'web1')).stderr).toBe(
      'bmctl: failed precondition: instance web1 is deploying; only ACTIVE bare-metal instances can be rebooted\n',
    );
  });

  const at = (time: string) => new Date(`2026-11-25T${time}Z`);
  const deploying = web1(S.INSTANCE_STATE_DEPLOYING, {
    step: 'deploying',
    retries: 1,
    progress: writing(1),
    steps: [
      {
        flow: 'deploy',
        controller: 'controller-a',
        name: 'service-network',
        state: 'done',
        startTime: at('08:39:10'),
        endTime: at('08:39:12'),
        message: '',
      },
      {
        flow: 'deploy',
        controller: 'controller-a',
        name: 'power-on',
        state: 'done',
        startTime: at('08:39:12'),
        endTime: at('08:41:30'),
        message: 'power cycle 1 of 2: the agent did not call in within 120s',
      },
      {
        flow: 'deploy',
        controller: 'controller-a',
        name: 'deploying',
        state: 'running',
        startTime: at('08:41:30'),
        endTime: undefined,
        message: '',
      },
    ],
  });

  it('show prints network, step, progress, retries and the step timeline', async () => {
    answers = { ...names, getInstance: () => deploying };

    const result = await bmctlWith({ now: () => at('08:42:35').getTime() }, 'instance', 'show', 'web1');

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^network +tenant-a$/m);
    expect(result.stdout).toMatch(/^step +deploying$/m);
    expect(result.stdout).toMatch(/^progress +writing 1\.0 GiB \/ 4\.0 GiB \(25%\) 512\.0 MiB\/s ETA 6s$/m);
    expect(result.stdout).toMatch(/^retries +1$/m);
    expect(result.stdout.split('\n\n')[1]).toBe(
      [
        'STEP             FLOW    STATE    START                 DURATION  MESSAGE',
        'service-network  deploy  done     2026-11-25T08:39:10Z  2s        -',
        'power-on         deploy  done     2026-11-25T08:39:12Z  2m18s     power cycle 1 of 2: the agent did not call in within 120s',
        'deploying        deploy  running  2026-11-25T08:41:30Z  1m05s     -',
        '',
      ].join('\n'),
    );
  });

  it('show -o json prints progress and steps as proto JSON', async () => {
    answers = { getInstance: () => deploying };

    const json = JSON.parse((await bmctl('instance', 'show', 'web1', '-o', 'json')).stdout);

    expect(json).toMatchObject({
      network_id: 'net-1',
      network_name: 'tenant-a',
      step: 'deploying',
      retries: 1,
      progress: { phase: 'writing', bytes_done: GiB, bytes_total: 4 * GiB, rate_bytes_per_second: 512 << 20 },
    });
    expect(json.steps[2]).toEqual({
      flow: 'deploy',
      name: 'deploying',
      state: 'running',
      start_time: '2026-11-25T08:41:30.000Z',
      end_time: null,
      message: '',
      controller: 'controller-a',
    });
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
