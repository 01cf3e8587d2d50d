import { mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { AgentServiceService } from '../../build/gen/ingot/v1/agent.ts';
import { CaptureServiceService } from '../../build/gen/ingot/v1/capture.ts';
import { ImageServiceService } from '../../build/gen/ingot/v1/image.ts';
import { InstanceServiceService } from '../../build/gen/ingot/v1/instance.ts';
import { InventoryServiceService } from '../../build/gen/ingot/v1/inventory.ts';
import { NetworkServiceService } from '../../build/gen/ingot/v1/network.ts';
import { PowerServiceService } from '../../build/gen/ingot/v1/power.ts';
import { SchedulerServiceService } from '../../build/gen/ingot/v1/scheduler.ts';
import { TaskServiceService } from '../../build/gen/ingot/v1/task.ts';
import { agentHandlers } from './api/agent-service.ts';
import { captureHandlers } from './api/capture-service.ts';
import { imageHandlers } from './api/image-service.ts';
import { instanceHandlers } from './api/instance-service.ts';
import { inventoryHandlers } from './api/inventory-service.ts';
import { RpcMetrics } from './api/metrics.ts';
import { networkHandlers } from './api/network-service.ts';
import { powerHandlers } from './api/power-service.ts';
import { addReflection } from './api/reflection.ts';
import { type Handlers, implement } from './api/rpc.ts';
import { schedulerHandlers } from './api/scheduler-service.ts';
import { taskHandlers } from './api/task-service.ts';
import { AgentSessions } from './conductor/agent-sessions.ts';
import { captureFlow } from './conductor/capture-flow.ts';
import { FlowBus } from './conductor/flow-bus.ts';
import { FlowSteps } from './conductor/flow-steps.ts';
import { instanceFlows } from './conductor/instance-flows.ts';
import { Placement } from './conductor/placement.ts';
import { PortFlipper } from './conductor/port-flips.ts';
import { PowerSync } from './conductor/power-sync.ts';
import { Provisioner } from './conductor/provisioner.ts';
import { rebootNode } from './conductor/reboot.ts';
import { TaskBus } from './conductor/task-bus.ts';
import { TaskQueue } from './conductor/task-queue.ts';
import type { ControllerConfig } from './config/config.ts';
import { Scheduler } from './domain/scheduler/scheduler.ts';
import { DnsmasqNetboot } from './drivers/netboot/dnsmasq-netboot.ts';
import { defaultControllerGrpc } from './drivers/netboot/netboot-config.ts';
import { createNetworkDrivers } from './drivers/network/registry.ts';
import { PowerManager } from './drivers/power/power-manager.ts';
import { createPowerDrivers } from './drivers/power/registry.ts';
import { agentRoutes } from './http/agent-routes.ts';
import { bootstrapRoutes } from './http/bootstrap-routes.ts';
import { imageRoutes } from './http/image-routes.ts';
import { createHttpServer } from './http/server.ts';
import { ImageCaptures } from './images/image-captures.ts';
import { ImageStore } from './images/image-store.ts';
import { UrlSigner } from './images/url-signer.ts';
import type { Logger } from './log/logger.ts';
import { controllerId } from './store/controller-id.ts';
import { HostStateCache } from './store/host-states.ts';
import { inventoryResources } from './store/inventory-resources.ts';
import { type Database, openDatabase } from './store/orm.ts';
import { SecretBox } from './store/secrets.ts';
import { ensureAdminToken } from './store/tokens.ts';

const DESCRIPTORS = new URL('../../build/descriptors.binpb', import.meta.url);
/** The agent executable `make agent` builds, served unless the config names another. */
const AGENT_BINARY = fileURLToPath(new URL('../../build/ingot-agent', import.meta.url));
const BOOTSTRAP_DIR = fileURLToPath(new URL('../../build/bootstrap', import.meta.url));
/** How long in-flight calls get to finish on shutdown before they are cut. @default 10 s */
const SHUTDOWN_GRACE_MS = 10_000;

/** A controller that is serving. */
export interface RunningController {
  /** The bound gRPC address (the real port when the config asked for port 0). */
  grpcAddress: string;
  httpAddress: string;
  /** The controller's database, for jobs and tests that run beside the API. */
  db: Database;
  /** Moves nodes' switch ports between networks (the provisioning flow's network steps). */
  network: PortFlipper;
  /** DHCP host entries and boot files for nodes being provisioned; undefined when netboot is off. */
  netboot: DnsmasqNetboot | undefined;
  /** Drives bare-metal deploy and delete flows; undefined when netboot is off. */
  provisioner: Provisioner | undefined;
  /** Stops taking calls, lets in-flight ones finish, closes the database. */
  stop(): Promise<void>;
}

/** Opens the database, then serves gRPC and HTTP. The composition root calls this once. */
export async function startController(config: ControllerConfig, log: Logger): Promise<RunningController> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const secrets = SecretBox.fromFile(config.secretKeyFile, { create: true });
  const db = await openDatabase(config.databaseLocation, log);
  const server = new grpc.Server();
  let http: Server | undefined;
  try {
    if (await ensureAdminToken(db.fork(), join(config.dataDir, 'admin.token'))) {
      log.info({ file: join(config.dataDir, 'admin.token') }, 'first start: admin token written');
    }
    const metrics = new RpcMetrics();
    const power = new PowerManager({ drivers: createPowerDrivers(), log });
    const powerSync = new PowerSync({ db, secrets, power, log });
    const placement = new Placement(new Scheduler(config.scheduler), new HostStateCache(db));
    const network = new PortFlipper({ db, drivers: createNetworkDrivers(), secrets, log });
    // The HTTP port is known once the listener is bound (port 0 in tests); URLs are built later.
    let boundHttpPort = 0;
    const httpBase = (authority: string) =>
      config.httpAdvertiseUrl.replace(/\/+$/, '') ||
      `http://${urlHost(authority, config.httpListen)}:${boundHttpPort}`;
    const bus = new TaskBus();
    const imageStore = new ImageStore(config.imageDir);
    const signer = new UrlSigner(secrets.derive('image-url-signing'));
    const tasks = new TaskQueue({ db, bus, signer, log });
    const agents = new AgentSessions({ db, queue: tasks, httpBase });
    const captures = new ImageCaptures({ db, store: imageStore, tasks, log, settings: config.capture });
    const flowBus = new FlowBus();
    // Created once gRPC is bound (the agents' address needs the port), then used by the services.
    let netboot: DnsmasqNetboot | undefined;
    let provisioner: Provisioner | undefined;
    const services: [grpc.ServiceDefinition, Handlers][] = [
      [
        InventoryServiceService,
        inventoryHandlers(inventoryResources(secrets), { onChange: () => placement.inventoryChanged() }),
      ],
      [SchedulerServiceService, schedulerHandlers(placement)],
      [
        InstanceServiceService,
        instanceHandlers({
          placement,
          get provisioner() {
            return provisioner;
          },
          bus: flowBus,
          closing: bus.closing,
          reboot: (em, instance, hard, signal) => rebootNode(em, { power, secrets }, instance, hard, signal),
        }),
      ],
      [
        CaptureServiceService,
        captureHandlers({
          get provisioner() {
            return provisioner;
          },
          bus: flowBus,
          closing: bus.closing,
        }),
      ],
      [ImageServiceService, imageHandlers({ db, store: imageStore, signer, log, httpBase, captures })],
      [AgentServiceService, agentHandlers(agents)],
      [TaskServiceService, taskHandlers(tasks, captures)],
      [PowerServiceService, powerHandlers({ secrets, power })],
      [NetworkServiceService, networkHandlers(network)],
    ];
    for (const [definition, handlers] of services) {
      server.addService(definition, implement(definition, handlers, { db, log, metrics }));
    }
    const serviceNames = services.map(([definition]) => serviceName(definition));
    const health = new HealthImplementation(
      Object.fromEntries([['', 'SERVING'], ...serviceNames.map((name) => [name, 'SERVING'])]),
    );
    health.addToServer(server);
    addReflection(server, readFileSync(DESCRIPTORS), [...serviceNames, 'grpc.health.v1.Health']);

    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(config.grpcListen, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const grpcAddress = `${config.grpcListen.slice(0, config.grpcListen.lastIndexOf(':'))}:${port}`;
    let serving = true;
    // Netboot when configured: DHCP host entries and boot files; the iPXE scripts are served over HTTP.
    netboot =
      config.netboot.mode === 'off'
        ? undefined
        : new DnsmasqNetboot({
            config: config.netboot,
            db,
            log,
            controllerUrl: config.httpAdvertiseUrl,
            controllerGrpc: defaultControllerGrpc(config.netboot, config.httpAdvertiseUrl, port),
          });
    http = createHttpServer({
      metrics,
      ready: () => serving,
      log,
      routes: [
        ...imageRoutes({ db, store: imageStore, signer, log }),
        ...agentRoutes({ agentBinary: config.agentBinary || AGENT_BINARY }),
        ...bootstrapRoutes({ bootstrapDir: config.bootstrapDir || BOOTSTRAP_DIR }),
        ...(netboot?.routes() ?? []),
      ],
    });
    const [httpHost, httpPort] = splitListen(config.httpListen);
    const listening = http;
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject);
      listening.listen(httpPort, httpHost, () => resolve());
    });
    const httpAddress = `${httpHost}:${(listening.address() as AddressInfo).port}`;
    boundHttpPort = Number(httpAddress.slice(httpAddress.lastIndexOf(':') + 1));
    await netboot?.start();
    powerSync.start();
    if (netboot) {
      const steps = new FlowSteps({
        db,
        log: log.child({ component: 'provisioner' }),
        settings: config.provisioning,
        secrets,
        power,
        network,
        netboot,
        tasks,
        agents,
        placement,
        bus: flowBus,
      });
      provisioner = new Provisioner(
        {
          db,
          log,
          bus: flowBus,
          owner: controllerId(config.dataDir),
          leaseMs: config.provisioning.leaseMs,
          scanIntervalMs: config.provisioning.scanIntervalMs,
        },
        [instanceFlows(steps), captureFlow({ db, steps, captures })],
      );
      provisioner.start();
    } else {
      log.info(
        'netboot is off: bare-metal instances are scheduled but not provisioned until it is configured',
      );
    }
    // Port moves a previous run recorded but did not finish; re-applying them is idempotent.
    void network.reconcile().catch((err: unknown) => log.error({ err }, 'port move reconcile failed'));
    log.info(
      { grpc: grpcAddress, http: httpAddress, database: config.databaseLocation.kind },
      'controller serving',
    );

    return {
      grpcAddress,
      httpAddress,
      db,
      network,
      netboot,
      provisioner,
      async stop() {
        serving = false;
        // Agent and watch streams never end on their own: end them so that shutdown need not wait.
        bus.close();
        for (const name of ['', ...serviceNames]) health.setStatus(name, 'NOT_SERVING');
        // HTTP keeps answering /healthz (503) while gRPC calls drain, so balancers see the stop.
        await provisioner?.stop();
        await captures.stop();
        await drainGrpc(server);
        await drainHttp(listening);
        await powerSync.stop();
        await network.stop();
        await netboot?.stop();
        await db.close();
        log.info('controller stopped');
      },
    };
  } catch (err) {
    server.forceShutdown();
    http?.close();
    await db.close();
    throw err;
  }
}

/**
 * Lets calls in flight finish, cutting them after the grace period. A stream whose peer vanished
 * (a node that rebooted after its port moved away) never finishes closing, and grpc-js then never
 * calls back: the forced shutdown ends the wait by itself.
 */
function drainGrpc(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, SHUTDOWN_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Closes idle keep-alive connections now and any download still running after the grace period. */
function drainHttp(http: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => http.closeAllConnections(), SHUTDOWN_GRACE_MS);
    http.close(() => {
      clearTimeout(timer);
      resolve();
    });
    http.closeIdleConnections();
  });
}

/** `ingot.v1.InventoryService` from its definition's method paths. */
function serviceName(definition: grpc.ServiceDefinition): string {
  const path = Object.values(definition)[0]?.path ?? '';
  return path.slice(1, path.lastIndexOf('/'));
}

/**
 * The host for URLs handed to a client: the one it dialled (`authority`), else the listen address
 * (or loopback when that is a wildcard). IPv6 in brackets.
 */
function urlHost(authority: string, listen: string): string {
  const dialled = authority.startsWith('[')
    ? authority.slice(1, authority.indexOf(']'))
    : authority.split(':')[0];
  let host = dialled || splitListen(listen)[0];
  if (host === '0.0.0.0' || host === '::' || host === '') host = '127.0.0.1';
  return isIP(host) === 6 ? `[${host}]` : host;
}

function splitListen(listen: string): [string, number] {
  const i = listen.lastIndexOf(':');
  return [listen.slice(0, i).replace(/^\[|\]$/g, ''), Number(listen.slice(i + 1))];
}
