import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, type JsonValue, toBinary, toJson } from '@bufbuild/protobuf';
import { type FileDescriptorProto, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InventoryServiceService } from '../../build/gen/ingot/v1/inventory.ts';
import { BACKENDS, removeDataDir, startTestController, type TestController } from '../support/controller.ts';
import { ReflectionClient } from '../support/reflection-client.ts';

// The real controller seen as grpcurl sees it: every type comes from server reflection, requests and
// answers are proto3 JSON, and error details are decoded with descriptors fetched the same way.

const SERVICES = [
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
  'ingot.v1.InventoryService',
];
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6}|\.\d{9})?Z$/;

const python = spawnSync('/usr/bin/python3', ['-c', 'import google.protobuf']).status === 0;

describe.each(BACKENDS)('reflection on a controller on %s', (backend) => {
  const skip = backend === 'postgres' && !process.env.INGOT_TEST_PG_URL;
  let ctl: TestController;
  let client: ReflectionClient;
  let bearer: Record<string, string>;
  let dataDir: string | undefined;

  beforeAll(async () => {
    if (skip) return;
    // Made here, not by startTestController, so that afterAll removes it even if the start fails.
    dataDir = mkdtempSync(join(tmpdir(), 'ingot-reflection-'));
    ctl = await startTestController({ backend, dataDir });
    client = await ReflectionClient.connect(ctl.address);
    bearer = { authorization: `Bearer ${ctl.token}` };
  }, 600_000); // a safety net: PGlite's first start takes minutes on a loaded 2-core machine

  afterAll(async () => {
    client?.close();
    await ctl?.stop();
    if (dataDir) removeDataDir(dataDir);
  });

  /** The call's status with its `grpc-status-details-bin` decoded from reflected descriptors alone. */
  async function failure(method: string, request: JsonValue, metadata: Record<string, string> = {}) {
    let error: grpc.ServiceError | undefined;
    try {
      await client.call(method, request, metadata);
    } catch (err) {
      error = err as grpc.ServiceError;
    }
    if (!error) throw new Error(`${method} succeeded but was expected to fail`);
    const registry = await client.registry(
      'google.rpc.Status',
      'google.rpc.ErrorInfo',
      'google.rpc.BadRequest',
    );
    const statusType = registry.getMessage('google.rpc.Status');
    const bin = error.metadata.get('grpc-status-details-bin')[0];
    if (!statusType || !(bin instanceof Buffer)) throw new Error(`no status details: ${error.message}`);
    return { code: error.code, details: toJson(statusType, fromBinary(statusType, bin), { registry }) };
  }

  it.skipIf(skip)('lists the inventory, health and reflection services, sorted', async () => {
    const services = await client.listServices();
    expect(services).toEqual(expect.arrayContaining(SERVICES));
    expect(services).toEqual([...services].sort());
  });

  it.skipIf(skip)(
    'describes every listed service, InventoryService as the generated code has it',
    async () => {
      const described = [];
      for (const name of await client.listServices()) described.push(await client.describe(name));

      expect(described.map((service) => [service.name, service.file])).toEqual(
        expect.arrayContaining([
          ['grpc.health.v1.Health', 'grpc/health/v1/health.proto'],
          ['grpc.reflection.v1.ServerReflection', 'grpc/reflection/v1/reflection.proto'],
          ['grpc.reflection.v1alpha.ServerReflection', 'grpc/reflection/v1alpha/reflection.proto'],
          ['ingot.v1.InventoryService', 'ingot/v1/inventory.proto'],
        ]),
      );
      for (const service of described) expect(service.methods.length, service.name).toBeGreaterThan(0);
      const inventory = described.find((service) => service.name === 'ingot.v1.InventoryService');
      expect(inventory?.methods.map((method) => method.path).sort()).toEqual(
        Object.values(InventoryServiceService)
          .map((definition) => definition.path)
          .sort(),
      );
      expect(inventory?.methods.find((method) => method.name === 'CreateNode')).toEqual({
        name: 'CreateNode',
        path: '/ingot.v1.InventoryService/CreateNode',
        input: 'ingot.v1.CreateNodeRequest',
        output: 'ingot.v1.Node',
        clientStreaming: false,
        serverStreaming: false,
      });
    },
  );

  it.skipIf(skip)('answers Health/Check without a token', async () => {
    expect(await client.call('grpc.health.v1.Health/Check', {})).toEqual({ status: 'SERVING' });
    expect(
      await client.call('grpc.health.v1.Health/Check', { service: 'ingot.v1.InventoryService' }),
    ).toEqual({
      status: 'SERVING',
    });
  });

  it.skipIf(skip)('creates and lists a node in proto3 JSON with the bearer token', async () => {
    const created = (await client.call(
      'ingot.v1.InventoryService/CreateNode',
      {
        node: {
          ip: '10.0.0.5',
          mac: '52:54:00:00:00:01',
          cpus: 4,
          ramMb: '8192',
          diskGb: '100',
          bmcAddress: '10.1.0.5',
          bmcPassword: 'reflected-secret',
        },
      },
      bearer,
    )) as Record<string, JsonValue>;

    expect(created).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
      name: 'node-525400000001',
      ip: '10.0.0.5',
      mac: '52:54:00:00:00:01',
      cpus: 4,
      ramMb: '8192',
      diskGb: '100',
      bmcAddress: '10.1.0.5',
      hasBmcPassword: true,
      powerDriver: 'ipmitool',
      provisionState: 'PROVISION_STATE_AVAILABLE',
      createTime: expect.stringMatching(RFC3339_UTC),
      updateTime: expect.stringMatching(RFC3339_UTC),
    });
    expect(Number.isNaN(Date.parse(String(created.createTime)))).toBe(false);
    expect(created).not.toHaveProperty('bmcPassword');
    expect(await client.call('ingot.v1.InventoryService/ListNodes', {}, bearer)).toEqual({
      nodes: [created],
    });
    expect(
      await client.call(
        'ingot.v1.InventoryService/ListNodes',
        { provisionState: 'PROVISION_STATE_ACTIVE', pageSize: 10 },
        bearer,
      ),
    ).toEqual({});
  });

  it.skipIf(skip)('refuses InventoryService calls without a token or with a wrong one', async () => {
    const unauthenticated = (message: string) => ({
      code: grpc.status.UNAUTHENTICATED,
      details: {
        code: grpc.status.UNAUTHENTICATED,
        message,
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'UNAUTHENTICATED',
            domain: 'ingot.dev',
          },
        ],
      },
    });
    expect(await failure('ingot.v1.InventoryService/ListNodes', {})).toEqual(
      unauthenticated('missing "authorization: Bearer <token>" metadata; bmctl reads INGOT_TOKEN'),
    );
    const wrong = { authorization: `Bearer ingot_${randomBytes(32).toString('base64url')}` };
    expect(
      await failure('ingot.v1.InventoryService/CreateNode', { node: { ip: '10.0.0.9' } }, wrong),
    ).toEqual(unauthenticated('the bearer token is not valid'));
  });

  it.skipIf(skip)(
    'reports invalid fields as BadRequest violations a reflection client can decode',
    async () => {
      const invalid = await failure(
        'ingot.v1.InventoryService/CreateNode',
        {
          node: {
            ip: '10.0.0.7',
            mac: 'not-a-mac',
            cpus: 2,
            ramMb: '1024',
            diskGb: '10',
            bmcAddress: '10.1.0.7',
          },
        },
        bearer,
      );
      expect(invalid).toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: {
          details: [
            { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'INVALID_ARGUMENT' },
            {
              '@type': 'type.googleapis.com/google.rpc.BadRequest',
              fieldViolations: [{ field: 'node.mac', description: expect.any(String) }],
            },
          ],
        },
      });
    },
  );

  it.skipIf(skip || !python)("links every reflected file in python's descriptor_pool", async () => {
    const files = new Map<string, FileDescriptorProto>();
    const services = await client.listServices();
    for (const symbol of [...services, 'google.rpc.Status', 'google.rpc.BadRequest']) {
      for (const file of await client.fileContainingSymbol(symbol)) files.set(file.name, file);
    }
    const set = toBinary(
      FileDescriptorSetSchema,
      create(FileDescriptorSetSchema, { file: [...files.values()] }),
    );
    const checked = spawnSync('/usr/bin/python3', ['-c', pythonLinkCheck], {
      input: set,
      encoding: 'buffer',
    });

    expect(checked.stderr.toString()).toBe('');
    expect(checked.status).toBe(0);
    expect(JSON.parse(checked.stdout.toString())).toEqual({
      files: [...files.keys()].sort(),
      services,
      createNode: ['ingot.v1.CreateNodeRequest', 'ingot.v1.Node'],
      createTime: 'google.protobuf.Timestamp',
    });
  });
});

/** Adds the files to a fresh pool imports-first; the pool rejects a file whose imports are missing. */
const pythonLinkCheck = `
import json, sys
from google.protobuf import descriptor_pb2, descriptor_pool
fds = descriptor_pb2.FileDescriptorSet.FromString(sys.stdin.buffer.read())
pool, pending, added = descriptor_pool.DescriptorPool(), list(fds.file), []
while pending:
    ready = [f for f in pending if set(f.dependency) <= set(added)]
    if not ready:
        sys.exit('imports never satisfied: ' + ', '.join(f.name for f in pending))
    for f in ready:
        pool.Add(f)
        added.append(f.name)
    pending = [f for f in pending if f.name not in added]
services = sorted(s.full_name for name in added for s in pool.FindFileByName(name).services_by_name.values())
create = pool.FindServiceByName('ingot.v1.InventoryService').methods_by_name['CreateNode']
node = pool.FindMessageTypeByName('ingot.v1.Node')
print(json.dumps({
    'files': sorted(added),
    'services': services,
    'createNode': [create.input_type.full_name, create.output_type.full_name],
    'createTime': node.fields_by_name['create_time'].message_type.full_name,
}))
`;
