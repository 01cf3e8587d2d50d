/**
 * A gRPC client that knows only what the server's reflection service tells it, as grpcurl does: no
 * proto files, no generated code for the services it calls. Tests use it to prove that operators
 * can describe and call the controller's API from reflection alone.
 */
import {
  create,
  createFileRegistry,
  type FileRegistry,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from '@bufbuild/protobuf';
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import {
  ServerReflectionClient,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from '../../build/gen/grpc/reflection/v1/reflection.ts';

export interface ReflectionClientOptions {
  /** @default grpc.credentials.createInsecure() */
  credentials?: grpc.ChannelCredentials;
  /** How long `connect` waits for the channel and each `call` for its answer. @default 10_000 */
  timeoutMs?: number;
}

export interface MethodDescription {
  name: string;
  /** `/pkg.Service/Method`, the HTTP/2 path. */
  path: string;
  /** Fully-qualified message names, e.g. `google.protobuf.Empty`. */
  input: string;
  output: string;
  clientStreaming: boolean;
  serverStreaming: boolean;
}

export interface ServiceDescription {
  name: string;
  /** The file that declares the service, e.g. `ingot/v1/inventory.proto`. */
  file: string;
  methods: MethodDescription[];
}

/** The server answered a reflection request with error_response; `code` is a grpc status code. */
export class ReflectionError extends Error {
  readonly code: grpc.status;

  constructor(code: grpc.status, message: string) {
    super(`reflection error ${grpc.status[code] ?? code}: ${message}`);
    this.name = 'ReflectionError';
    this.code = code;
  }
}

interface Pending {
  resolve: (response: ServerReflectionResponse) => void;
  reject: (error: Error) => void;
}

/**
 * One channel and one reflection stream for the client's lifetime; requests are answered in order on
 * that stream and it is never reopened, so a server that ends it after an error shows up as a failure.
 */
export class ReflectionClient {
  readonly #client: ServerReflectionClient;
  readonly #stream: grpc.ClientDuplexStream<ServerReflectionRequest, ServerReflectionResponse>;
  readonly #timeoutMs: number;
  readonly #pending: Pending[] = [];
  /** Every file the server has sent, by name. */
  readonly #files = new Map<string, FileDescriptorProto>();
  #streamError: Error | undefined;

  private constructor(client: ServerReflectionClient, timeoutMs: number) {
    this.#client = client;
    this.#timeoutMs = timeoutMs;
    this.#stream = client.serverReflectionInfo();
    this.#stream.on('data', (response: ServerReflectionResponse) => {
      const pending = this.#pending.shift();
      const error = response.errorResponse;
      if (error) pending?.reject(new ReflectionError(error.errorCode, error.errorMessage));
      else pending?.resolve(response);
    });
    this.#stream.on('error', (error: Error) => this.#failPending(error));
    this.#stream.on('end', () => this.#failPending(new Error('the server ended the reflection stream')));
  }

  /** Connects to `address` (`host:port`); rejects when the channel is not ready within `timeoutMs`. */
  static async connect(address: string, options: ReflectionClientOptions = {}): Promise<ReflectionClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const client = new ServerReflectionClient(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
    );
    try {
      await new Promise<void>((resolve, reject) =>
        client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve())),
      );
    } catch (error) {
      client.close();
      throw new Error(`cannot reach ${address} within ${timeoutMs} ms`, { cause: error });
    }
    return new ReflectionClient(client, timeoutMs);
  }

  /** Fully-qualified names of the services the server says it serves. */
  async listServices(): Promise<string[]> {
    const response = await this.#ask({ listServices: '' });
    return (response.listServicesResponse?.service ?? []).map((service) => service.name);
  }

  /** The file declaring `symbol` followed by the files it imports, as the server sent them. */
  async fileContainingSymbol(symbol: string): Promise<FileDescriptorProto[]> {
    return this.#filesFrom(await this.#ask({ fileContainingSymbol: symbol }));
  }

  async fileByFilename(fileName: string): Promise<FileDescriptorProto[]> {
    return this.#filesFrom(await this.#ask({ fileByFilename: fileName }));
  }

  /**
   * A registry of the files declaring `symbols` and everything they import, linked as strictly as
   * grpcurl links them: a file may only use types from itself and the files it imports.
   * @throws Error naming the file whose import list is incomplete.
   */
  async registry(...symbols: string[]): Promise<FileRegistry> {
    for (const symbol of symbols) await this.fileContainingSymbol(symbol);
    return linkStrictly(this.#files);
  }

  async describe(service: string): Promise<ServiceDescription> {
    const desc = (await this.registry(service)).getService(service);
    if (!desc) throw new Error(`${service} is not a service`);
    return {
      name: desc.typeName,
      file: desc.file.proto.name,
      methods: desc.methods.map((method) => ({
        name: method.name,
        path: `/${desc.typeName}/${method.name}`,
        input: method.input.typeName,
        output: method.output.typeName,
        clientStreaming: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
        serverStreaming: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      })),
    };
  }

  /**
   * Calls unary `method` (`pkg.Service/Method`) with `request` in protobuf JSON and returns the
   * response in protobuf JSON (fields with default values omitted).
   * @throws grpc.ServiceError with the server's status when the call fails.
   */
  async call(method: string, request: JsonValue, metadata: Record<string, string> = {}): Promise<JsonValue> {
    const [service = '', methodName] = method.replace(/^\//, '').split('/');
    const registry = await this.registry(service);
    const desc = registry.getService(service)?.methods.find((candidate) => candidate.name === methodName);
    if (!desc) throw new Error(`${method} is not a method the server describes`);
    if (desc.methodKind !== 'unary')
      throw new Error(`${method} is ${desc.methodKind}; only unary calls are supported`);

    const requestBytes = Buffer.from(toBinary(desc.input, fromJson(desc.input, request, { registry })));
    const grpcMetadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(metadata)) grpcMetadata.set(key, value);
    const responseBytes = await new Promise<Buffer>((resolve, reject) =>
      this.#client.makeUnaryRequest(
        `/${service}/${methodName}`,
        (bytes: Buffer) => bytes,
        (bytes: Buffer) => bytes,
        requestBytes,
        grpcMetadata,
        { deadline: Date.now() + this.#timeoutMs },
        (error, response) => (error ? reject(error) : resolve(response ?? Buffer.alloc(0))),
      ),
    );
    return toJson(desc.output, fromBinary(desc.output, responseBytes), { registry });
  }

  close(): void {
    this.#stream.end();
    this.#client.close();
  }

  #ask(request: Partial<ServerReflectionRequest>): Promise<ServerReflectionResponse> {
    if (this.#streamError) return Promise.reject(this.#streamError);
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#stream.write({ host: '', ...request });
    });
  }

  #filesFrom(response: ServerReflectionResponse): FileDescriptorProto[] {
    const files = (response.fileDescriptorResponse?.fileDescriptorProto ?? []).map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    for (const file of files) this.#files.set(file.name, file);
    return files;
  }

  #failPending(error: Error): void {
    this.#streamError ??= error;
    for (const pending of this.#pending.splice(0)) pending.reject(error);
  }
}

/**
 * createFileRegistry resolves type names against everything added before, so a file with a missing
 * import still links when the imported file happens to be present. grpcurl's linker does not forgive
 * that, so check visibility first, then add the files dependencies-first as createFileRegistry needs.
 */
function linkStrictly(files: Map<string, FileDescriptorProto>): FileRegistry {
  const declaredIn = new Map<string, string>();
  for (const file of files.values()) {
    for (const name of declaredNames(file)) declaredIn.set(name, file.name);
  }
  const ordered = new Map<string, FileDescriptorProto>();
  const visiting = new Set<string>();
  const visit = (fileName: string, importer: string): void => {
    if (ordered.has(fileName)) return;
    if (visiting.has(fileName)) throw new Error(`${fileName} imports itself through ${importer}`);
    const file = files.get(fileName);
    if (!file) throw new Error(`${importer} imports ${fileName}, which reflection did not send`);
    visiting.add(fileName);
    for (const dependency of file.dependency) visit(dependency, fileName);
    const visible = visibleFiles(file, files);
    for (const typeName of referencedTypes(file)) {
      const home = declaredIn.get(typeName);
      if (!home || !visible.has(home)) {
        throw new Error(`${fileName} uses ${typeName}, which is not declared in it or in a file it imports`);
      }
    }
    ordered.set(fileName, file);
  };
  for (const fileName of files.keys()) visit(fileName, 'the server');
  return createFileRegistry(create(FileDescriptorSetSchema, { file: [...ordered.values()] }));
}

/** The file itself, its imports and whatever those re-export with `import public`. */
function visibleFiles(file: FileDescriptorProto, files: Map<string, FileDescriptorProto>): Set<string> {
  const visible = new Set([file.name]);
  const addWithPublicImports = (fileName: string): void => {
    if (visible.has(fileName)) return;
    visible.add(fileName);
    const imported = files.get(fileName);
    for (const index of imported?.publicDependency ?? []) {
      const reexported = imported?.dependency[index];
      if (reexported) addWithPublicImports(reexported);
    }
  };
  for (const dependency of file.dependency) addWithPublicImports(dependency);
  return visible;
}

function declaredNames(file: FileDescriptorProto): string[] {
  const names: string[] = [];
  const scoped = (scope: string, name: string) => (scope ? `${scope}.${name}` : name);
  const walk = (scope: string, messages: FileDescriptorProto['messageType']): void => {
    for (const message of messages) {
      const name = scoped(scope, message.name);
      names.push(name, ...message.enumType.map((enumType) => scoped(name, enumType.name)));
      walk(name, message.nestedType);
    }
  };
  walk(file.package, file.messageType);
  names.push(...file.enumType.map((enumType) => scoped(file.package, enumType.name)));
  return names;
}

/** Message and enum names the file refers to, fully qualified without the leading dot. */
function referencedTypes(file: FileDescriptorProto): string[] {
  const names: string[] = [];
  const walk = (messages: FileDescriptorProto['messageType']): void => {
    for (const message of messages) {
      for (const field of [...message.field, ...message.extension])
        names.push(field.typeName, field.extendee);
      walk(message.nestedType);
    }
  };
  walk(file.messageType);
  for (const extension of file.extension) names.push(extension.typeName, extension.extendee);
  for (const method of file.service.flatMap((service) => service.method)) {
    names.push(method.inputType, method.outputType);
  }
  return names.filter((name) => name !== '').map((name) => name.replace(/^\./, ''));
}
