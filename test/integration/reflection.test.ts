import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { create, toBinary } from '@bufbuild/protobuf';
import { type FileDescriptorProto, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ServerReflectionRequest,
  type ServerReflectionResponse,
  ServerReflectionClient as V1alphaReflectionClient,
} from '../../build/gen/grpc/reflection/v1alpha/reflection.ts';
import { addReflection } from '../../controller/src/api/reflection.ts';
import { ReflectionClient, ReflectionError } from '../support/reflection-client.ts';

const descriptorSet = readFileSync(new URL('../../build/descriptors.binpb', import.meta.url));
const servedServices = ['grpc.health.v1.Health', 'ingot.v1.InventoryService'];
const reflectionPath = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo';

let server: grpc.Server;
let address: string;
let client: ReflectionClient;

beforeAll(async () => {
  server = new grpc.Server();
  new HealthImplementation({ '': 'SERVING' }).addToServer(server);
  // No InventoryService handler: reflection must still describe it, and calls answer UNIMPLEMENTED.
  addReflection(server, descriptorSet, servedServices);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    ),
  );
  address = `127.0.0.1:${port}`;
  client = await ReflectionClient.connect(address);
});

afterAll(() => {
  client?.close();
  server?.forceShutdown();
});

describe('server reflection', () => {
  it('lists the served services and its own two', async () => {
    expect(await client.listServices()).toEqual([
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
      'ingot.v1.InventoryService',
    ]);
  });

  it('describes every listed service with the types of other files resolved', async () => {
    const services = await Promise.all((await client.listServices()).map((name) => client.describe(name)));
    const method = (service: string, name: string) =>
      services.find((s) => s.name === service)?.methods.find((m) => m.name === name);

    expect(services.map((s) => s.file)).toEqual([
      'grpc/health/v1/health.proto',
      'grpc/reflection/v1/reflection.proto',
      'grpc/reflection/v1alpha/reflection.proto',
      'ingot/v1/inventory.proto',
    ]);
    expect(method('grpc.health.v1.Health', 'Watch')).toMatchObject({
      input: 'grpc.health.v1.HealthCheckRequest',
      output: 'grpc.health.v1.HealthCheckResponse',
      serverStreaming: true,
    });
    expect(method('grpc.reflection.v1alpha.ServerReflection', 'ServerReflectionInfo')).toMatchObject({
      clientStreaming: true,
      serverStreaming: true,
    });
    expect(method('ingot.v1.InventoryService', 'DeleteNode')).toEqual({
      name: 'DeleteNode',
      path: '/ingot.v1.InventoryService/DeleteNode',
      input: 'ingot.v1.DeleteNodeRequest',
      output: 'google.protobuf.Empty',
      clientStreaming: false,
      serverStreaming: false,
    });
  });

  it('sends each file with its complete, transitive dependency list', async () => {
    const files = await client.fileContainingSymbol('ingot.v1.InventoryService');
    expect(files.map((file) => file.name)).toEqual([
      'ingot/v1/inventory.proto',
      'google/protobuf/empty.proto',
      'google/protobuf/field_mask.proto',
      'google/protobuf/timestamp.proto',
    ]);
    const errorDetails = await client.fileByFilename('google/rpc/error_details.proto');
    expect(errorDetails.map((file) => file.name)).toEqual([
      'google/rpc/error_details.proto',
      'google/protobuf/duration.proto',
    ]);
    // Links every file fetched so far as strictly as grpcurl; throws on a missing import.
    const registry = await client.registry('google.rpc.Status', 'google.rpc.BadRequest');
    expect(registry.getMessage('google.rpc.Status')?.field.details?.message?.typeName).toBe(
      'google.protobuf.Any',
    );
  });

  it('keeps protoc names: map entries called …Entry, snake_case fields with json_name', async () => {
    const [inventory] = await client.fileContainingSymbol('ingot.v1.Flavor.ExtraSpecsEntry');
    const flavor = inventory?.messageType.find((message) => message.name === 'Flavor');
    expect(flavor?.nestedType.map((entry) => [entry.name, entry.options?.mapEntry])).toEqual([
      ['ExtraSpecsEntry', true],
    ]);
    expect(flavor?.field.find((field) => field.number === 6)).toMatchObject({
      name: 'extra_specs',
      jsonName: 'extraSpecs',
      typeName: '.ingot.v1.Flavor.ExtraSpecsEntry',
    });
    expect(flavor?.field.find((field) => field.number === 4)).toMatchObject({
      name: 'ram_mb',
      jsonName: 'ramMb',
    });

    const registry = await client.registry('ingot.v1.Flavor');
    expect(registry.getMessage('ingot.v1.Flavor')?.field.extraSpecs?.fieldKind).toBe('map');
  });

  it('calls Health/Check from reflection alone', async () => {
    expect(await client.call('grpc.health.v1.Health/Check', {})).toEqual({ status: 'SERVING' });
    await expect(
      client.call('grpc.health.v1.Health/Check', { service: 'ingot.v1.Nope' }),
    ).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
  });

  it('encodes requests to described services without handlers, which answer UNIMPLEMENTED', async () => {
    const listNodes = client.call(
      'ingot.v1.InventoryService/ListNodes',
      { pageSize: 10, provisionState: 'PROVISION_STATE_AVAILABLE', maintenance: false },
      { authorization: 'Bearer x' },
    );
    await expect(listNodes).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });

  it('answers an unknown symbol with NOT_FOUND and keeps serving the same stream', async () => {
    const unknown = client.fileContainingSymbol('ingot.v1.NoSuchThing');
    await expect(unknown).rejects.toBeInstanceOf(ReflectionError);
    await expect(unknown).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(client.fileByFilename('ingot/v1/missing.proto')).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    // The client never reopens its stream, so this answer proves the server kept it open.
    expect(await client.listServices()).toContain('ingot.v1.InventoryService');
  });

  it('answers v1alpha too, extension queries included, and ends the stream when the client does', async () => {
    const requests: Partial<ServerReflectionRequest>[] = [
      { fileContainingSymbol: 'ingot.v1.InventoryService.ListNodes' },
      { fileContainingSymbol: 'ingot.v1.PROVISION_STATE_ACTIVE' },
      { allExtensionNumbersOfType: 'ingot.v1.Node' },
      { allExtensionNumbersOfType: 'ingot.v1.NoSuchMessage' },
      { fileContainingExtension: { containingType: 'ingot.v1.Node', extensionNumber: 1000 } },
      {},
    ];
    const alpha = new V1alphaReflectionClient(address, grpc.credentials.createInsecure());
    const stream = alpha.serverReflectionInfo();
    const responses: ServerReflectionResponse[] = [];
    stream.on('data', (response: ServerReflectionResponse) => responses.push(response));
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    for (const request of requests) stream.write({ host: '', ...request });
    stream.end();

    expect((await ended).code).toBe(grpc.status.OK);
    alpha.close();
    const [method, enumValue, numbers, unknownType, extension, empty] = responses;
    expect(method?.fileDescriptorResponse?.fileDescriptorProto).toHaveLength(4);
    expect(enumValue?.fileDescriptorResponse?.fileDescriptorProto).toHaveLength(4);
    expect(numbers?.allExtensionNumbersResponse).toEqual({
      baseTypeName: 'ingot.v1.Node',
      extensionNumber: [],
    });
    expect(unknownType?.errorResponse?.errorCode).toBe(grpc.status.NOT_FOUND);
    expect(extension?.errorResponse?.errorCode).toBe(grpc.status.NOT_FOUND);
    expect(empty?.errorResponse?.errorCode).toBe(grpc.status.INVALID_ARGUMENT);
    expect(responses.map((response) => response.originalRequest)).toMatchObject(requests);
  });

  it('rejects an undecodable request without harming the server', async () => {
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    const stream = raw.makeBidiStreamRequest(
      reflectionPath,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
    );
    const failed = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    stream.write(Buffer.from([0x0f])); // field 1 with wire type 7, which does not exist
    expect((await failed).code).toBe(grpc.status.INTERNAL);
    raw.close();
    expect(await client.listServices()).toHaveLength(4);
  });

  it('refuses to serve services the descriptor set does not describe', () => {
    expect(() => addReflection(new grpc.Server(), descriptorSet, ['ingot.v1.NoSuchService'])).toThrow(
      /does not describe ingot\.v1\.NoSuchService/,
    );
  });

  const python = ['python3', '/usr/bin/python3'].find(
    (candidate) => spawnSync(candidate, ['-c', 'import google.protobuf']).status === 0,
  );

  it.skipIf(!python)("links in python's descriptor_pool (protobuf's own linker)", async () => {
    const files = new Map<string, FileDescriptorProto>();
    for (const service of await client.listServices()) {
      for (const file of await client.fileContainingSymbol(service)) files.set(file.name, file);
    }
    const set = toBinary(
      FileDescriptorSetSchema,
      create(FileDescriptorSetSchema, { file: [...files.values()] }),
    );
    const checked = spawnSync(python ?? 'python3', ['-c', pythonLinkCheck], {
      input: set,
      encoding: 'buffer',
    });
    expect(checked.stderr.toString()).toBe('');
    expect(JSON.parse(checked.stdout.toString())).toEqual({
      services: [
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
        'ingot.v1.InventoryService',
      ],
      extraSpecs: ['ExtraSpecsEntry', true, 'extraSpecs'],
      listNodesInput: 'ingot.v1.ListNodesRequest',
    });
  });
});

/** Adds the files to a fresh pool imports-first; the pool rejects any file whose imports are missing. */
const pythonLinkCheck = `
import json, sys
from google.protobuf import descriptor_pb2, descriptor_pool
fds = descriptor_pb2.FileDescriptorSet.FromString(sys.stdin.buffer.read())
pool, pending, added = descriptor_pool.DescriptorPool(), list(fds.file), set()
while pending:
    ready = [f for f in pending if set(f.dependency) <= added]
    if not ready:
        sys.exit('imports never satisfied: ' + ', '.join(f.name for f in pending))
    for f in ready:
        pool.Add(f)
        added.add(f.name)
    pending = [f for f in pending if f.name not in added]
services = sorted(s.full_name for f in fds.file for s in pool.FindFileByName(f.name).services_by_name.values())
field = pool.FindMessageTypeByName('ingot.v1.Flavor').fields_by_name['extra_specs']
method = pool.FindServiceByName('ingot.v1.InventoryService').methods_by_name['ListNodes']
print(json.dumps({
    'services': services,
    'extraSpecs': [field.message_type.name, field.message_type.GetOptions().map_entry, field.json_name],
    'listNodesInput': method.input_type.full_name,
}))
`;
