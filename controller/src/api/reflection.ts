/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) answered from the descriptor set that
 * `make proto` compiles, not from @grpc/reflection: clients such as grpcurl then see what protoc
 * produced, with real file names, complete import lists, map entries named `…Entry` and snake_case
 * fields carrying json_name, so they can describe and call every method.
 */
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from '@bufbuild/protobuf/wkt';
import { type handleBidiStreamingCall, type Server, status } from '@grpc/grpc-js';
import * as v1 from '../../../build/gen/grpc/reflection/v1/reflection.ts';
import * as v1alpha from '../../../build/gen/grpc/reflection/v1alpha/reflection.ts';

type ReflectionRequest = v1.ServerReflectionRequest;
type ReflectionResponse = v1.ServerReflectionResponse;

const reflectionServiceNames = [
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];

/** What reflection answers from, built once per server. Names are fully qualified, without a leading dot. */
interface DescriptorIndex {
  /** Each file serialized once, by file name. */
  fileBytes: Map<string, Buffer>;
  dependencies: Map<string, string[]>;
  /** Every named element (package-level and nested types, services, methods, fields, enum values) → file. */
  symbolFiles: Map<string, string>;
  messages: Set<string>;
  /** Extended message → extension number → file that declares the extension. */
  extensionFiles: Map<string, Map<number, string>>;
  /** The services list_services names, sorted. */
  services: string[];
}

/**
 * Registers grpc.reflection.v1.ServerReflection and its v1alpha twin on `server`.
 *
 * @param descriptorSet a serialized google.protobuf.FileDescriptorSet holding every served file and
 *   all of its imports (`build/descriptors.binpb`, from `buf build --as-file-descriptor-set`).
 * @param serviceNames the fully-qualified services `server` really serves, e.g. `grpc.health.v1.Health`;
 *   the two reflection services are added to the list by this function.
 * @throws Error when the set does not parse or does not describe one of `serviceNames`: a wiring bug
 *   that must stop startup rather than show clients services they cannot describe.
 */
export function addReflection(server: Server, descriptorSet: Uint8Array, serviceNames: string[]): void {
  const index = indexDescriptors(descriptorSet, [...serviceNames, ...reflectionServiceNames]);
  const serverReflectionInfo = answerEachRequest(index);
  server.addService(v1.ServerReflectionService, { serverReflectionInfo });
  server.addService(v1alpha.ServerReflectionService, { serverReflectionInfo });
}

function indexDescriptors(descriptorSet: Uint8Array, serviceNames: string[]): DescriptorIndex {
  const index: DescriptorIndex = {
    fileBytes: new Map(),
    dependencies: new Map(),
    symbolFiles: new Map(),
    messages: new Set(),
    extensionFiles: new Map(),
    services: [...new Set(serviceNames)].sort(),
  };
  for (const file of fromBinary(FileDescriptorSetSchema, descriptorSet).file) {
    index.fileBytes.set(file.name, Buffer.from(toBinary(FileDescriptorProtoSchema, file)));
    index.dependencies.set(file.name, file.dependency);
    indexFile(index, file);
  }
  const undescribed = index.services.filter((name) => !index.symbolFiles.has(name));
  if (undescribed.length > 0) {
    throw new Error(`the descriptor set does not describe ${undescribed.join(', ')}; run \`make proto\``);
  }
  return index;
}

function indexFile(index: DescriptorIndex, file: FileDescriptorProto): void {
  const add = (scope: string, name: string): string => {
    const fullName = scope ? `${scope}.${name}` : name;
    index.symbolFiles.set(fullName, file.name);
    return fullName;
  };
  // Enum values are scoped like their enum, not inside it (protobuf's C++ scoping rule).
  const addEnums = (scope: string, enums: EnumDescriptorProto[]): void => {
    for (const enumType of enums) {
      add(scope, enumType.name);
      for (const value of enumType.value) add(scope, value.name);
    }
  };
  const addExtensions = (scope: string, extensions: FieldDescriptorProto[]): void => {
    for (const extension of extensions) {
      add(scope, extension.name);
      const extended = extension.extendee.replace(/^\./, '');
      const byNumber = index.extensionFiles.get(extended) ?? new Map<number, string>();
      index.extensionFiles.set(extended, byNumber.set(extension.number, file.name));
    }
  };
  const addMessages = (scope: string, messages: DescriptorProto[]): void => {
    for (const message of messages) {
      const name = add(scope, message.name);
      index.messages.add(name);
      for (const field of message.field) add(name, field.name);
      for (const oneof of message.oneofDecl) add(name, oneof.name);
      addEnums(name, message.enumType);
      addExtensions(name, message.extension);
      addMessages(name, message.nestedType);
    }
  };
  addMessages(file.package, file.messageType);
  addEnums(file.package, file.enumType);
  addExtensions(file.package, file.extension);
  for (const service of file.service) {
    const name = add(file.package, service.name);
    for (const method of service.method) add(name, method.name);
  }
}

/**
 * Answers every request of the bidi stream in order. Failures are error_responses on an open stream,
 * as the protocol asks; the stream ends when the client ends it. Undecodable messages never get here:
 * grpc-js answers them with INTERNAL.
 */
function answerEachRequest(
  index: DescriptorIndex,
): handleBidiStreamingCall<ReflectionRequest, ReflectionResponse> {
  return (call) => {
    call.on('data', (request: ReflectionRequest) => call.write(answer(index, request)));
    call.on('end', () => call.end());
  };
}

function answer(index: DescriptorIndex, request: ReflectionRequest): ReflectionResponse {
  const response = { validHost: request.host, originalRequest: request };
  const error = (errorCode: status, errorMessage: string) => ({
    ...response,
    errorResponse: { errorCode, errorMessage },
  });
  const files = (fileName: string) => ({
    ...response,
    fileDescriptorResponse: { fileDescriptorProto: withDependencies(index, fileName) },
  });

  if (request.listServices !== undefined) {
    return { ...response, listServicesResponse: { service: index.services.map((name) => ({ name })) } };
  }
  if (request.fileByFilename !== undefined) {
    const name = request.fileByFilename;
    return index.fileBytes.has(name) ? files(name) : error(status.NOT_FOUND, `file ${name} is not known`);
  }
  if (request.fileContainingSymbol !== undefined) {
    const symbol = request.fileContainingSymbol;
    const fileName = index.symbolFiles.get(symbol);
    return fileName
      ? files(fileName)
      : error(status.NOT_FOUND, `symbol ${symbol} is not defined (names are fully qualified: pkg.Service)`);
  }
  if (request.fileContainingExtension !== undefined) {
    const { containingType, extensionNumber } = request.fileContainingExtension;
    const fileName = index.extensionFiles.get(containingType)?.get(extensionNumber);
    return fileName
      ? files(fileName)
      : error(status.NOT_FOUND, `no extension ${extensionNumber} of ${containingType} is known`);
  }
  if (request.allExtensionNumbersOfType !== undefined) {
    const baseTypeName = request.allExtensionNumbersOfType;
    const extensionNumber = [...(index.extensionFiles.get(baseTypeName)?.keys() ?? [])];
    return index.messages.has(baseTypeName)
      ? { ...response, allExtensionNumbersResponse: { baseTypeName, extensionNumber } }
      : error(status.NOT_FOUND, `message ${baseTypeName} is not defined`);
  }
  return error(status.INVALID_ARGUMENT, 'the request sets none of the fields this server knows');
}

/** `fileName` first (clients such as grpcurl rely on that), then every file it imports, transitively. */
function withDependencies(index: DescriptorIndex, fileName: string): Buffer[] {
  const names = new Set([fileName]);
  for (const name of names) {
    for (const dependency of index.dependencies.get(name) ?? []) names.add(dependency);
  }
  return [...names].flatMap((name) => index.fileBytes.get(name) ?? []);
}
