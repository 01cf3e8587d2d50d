/**
 * A virtual data centre with a controller process serving it, enrolled and
 * ready to boot instances: the lab's switch (Linux bridges in a namespace),
 * service and project networks, nodes with their BMCs and disks, a project,
 * a flavor and a lab image. The controller runs as operators run it (its own
 * process, managed dnsmasq in the lab's switch namespace), so that tests can
 * SIGKILL and restart it. Everything is stopped by PID and removed in `stop()`.
 */

import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as capturePb from '../../build/gen/ingot/v1/capture.ts';
import { DiskFormat, ImageVisibility } from '../../build/gen/ingot/v1/image.ts';
import * as instancePb from '../../build/gen/ingot/v1/instance.ts';
import * as networkPb from '../../build/gen/ingot/v1/network.ts';
import { type BuiltLabImage, buildLabImage } from '../../tools/lab/lab-image.ts';
import { startVirtualLab, type VirtualLab } from '../../tools/lab/virtual-lab.ts';
import { VM_NETBOOT_OPTIONS } from '../../tools/lab/vm-lab.ts';
import { ensureAgentBinary, imageApi, uploadImage } from './agent.ts';
import { createPgDatabase, decodeError, InventoryApi, instanceApi, ServiceApi } from './controller.ts';
import { type ControllerProcess, ProcessTracker } from './process.ts';
import { ensureVmImages } from './vm-images.ts';

export const PROJECT = 'acme';
export const FLAVOR = 'bm.lab';
export const PROJECT_NETWORK = 'acme-net';
export const IMAGE = 'lab-image';
/** Node size as enrolled; the flavor asks for exactly this. */
const NODE_SIZE = { cpus: 2, ramMb: 2048, diskGb: 1 };

export interface ProvisioningLabOptions {
  count: number;
  backend?: 'pglite' | 'postgres';
  /** The controller's `provisioning` settings (short timeouts for fault tests). */
  provisioning?: Record<string, number>;
  /** @default 16 */
  imageMiB?: number;
  /** Each node's disk. @default 64 */
  diskMiB?: number;
  /** Project bridges in the lab; the first is the project network. @default ['br-proj'] */
  projectBridges?: string[];
  /**
   * QEMU virtual machines as nodes (tools/lab/vm-lab.ts): they PXE-boot the bootstrap image, and the
   * image is the VM test image (tools/lab/test-image.sh) instead of a lab image.
   */
  vm?: boolean;
}

export interface ProvisioningLab {
  lab: VirtualLab;
  /** The controller process now serving (replaced by `restartController`). */
  controller: ControllerProcess;
  /** gRPC address for clients on this machine. */
  address: string;
  token: string;
  /** The controller's netboot directory (`hosts/` holds the DHCP host entries). */
  netbootDir: string;
  image: BuiltLabImage & { id: string };
  inventory: InventoryApi;
  instances: ServiceApi<typeof instancePb.InstanceServiceService>;
  networks: ServiceApi<typeof networkPb.NetworkServiceService>;
  /** SIGKILL, as a crash or an OOM kill does; leaves everything else running. */
  killController(): Promise<void>;
  /**
   * Starts another controller on the same PostgreSQL database and netboot directory (external
   * mode: the first controller's dnsmasq serves DHCP), as a second controller for high availability.
   */
  startPeer(): Promise<{ process: ControllerProcess; address: string }>;
  /** Starts the controller again on the same data directory, database and ports. */
  restartController(): Promise<ControllerProcess>;
  /** Boots an instance of the lab image (or `image`) on the project network. */
  boot(name: string, opts?: { image?: string }): Promise<instancePb.Instance>;
  /** Builds a lab image of `sizeMiB` and uploads it as `name`. */
  addImage(name: string, sizeMiB: number): Promise<BuiltLabImage & { id: string }>;
  /**
   * Follows WatchInstance until the stream ends; returns every event (`onEvent` sees each as it
   * comes). An instance already gone is one `deleted` event.
   */
  watch(
    id: string,
    opts?: { untilDeleted?: boolean; onEvent?: (e: instancePb.InstanceEvent) => void },
  ): Promise<instancePb.InstanceEvent[]>;
  stop(): Promise<void>;
}

export async function startProvisioningLab(opts: ProvisioningLabOptions): Promise<ProvisioningLab> {
  const agentBinary = await ensureAgentBinary();
  const vmImage = opts.vm ? await ensureVmImages() : undefined;
  const projectBridges = opts.projectBridges ?? ['br-proj'];
  const lab = await startVirtualLab({
    count: opts.count,
    agentBinary,
    projectNetworks: projectBridges,
    ...(opts.diskMiB ? { diskMiB: opts.diskMiB } : {}),
    ...(opts.vm ? { vm: true } : {}),
  });
  const tracker = new ProcessTracker();
  const work = mkdtempSync(join(tmpdir(), 'ingot-prov-'));
  // dnsmasq drops to nobody and must reach the netboot directory inside.
  chmodSync(work, 0o755);
  const clients: { close(): void }[] = [];
  const stop = async () => {
    for (const c of clients) c.close();
    await tracker.killAll();
    await lab.stop();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const database = opts.backend === 'postgres' ? await createPgDatabase() : '';
    const netbootDir = join(work, 'netboot');
    /** A controller's config file: the first runs dnsmasq; peers share its netboot directory. */
    const configure = async (name: string, netboot: Record<string, unknown>) => {
      const [grpcPort, httpPort] = [await freeTcpPort(), await freeTcpPort()];
      const file = join(work, `${name}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          dataDir: join(work, name),
          // Controllers sharing a database share the key that seals BMC and switch passwords.
          secretKeyFile: join(work, 'secret.key'),
          // …and the image store.
          imageDir: join(work, 'images'),
          database,
          grpcListen: `0.0.0.0:${grpcPort}`,
          httpListen: `0.0.0.0:${httpPort}`,
          httpAdvertiseUrl: `http://${lab.hostAddress}:${httpPort}`,
          agentBinary,
          logLevel: 'debug',
          netboot: {
            dir: netbootDir,
            subnet: lab.serviceSubnet,
            // The bootstrap image logs to the VMs' serial consoles.
            ...(opts.vm ? { kernelArgs: 'console=ttyS0', extraOptions: VM_NETBOOT_OPTIONS } : {}),
            ...netboot,
          },
          provisioning: { scanIntervalMs: 500, ...opts.provisioning },
        }),
      );
      return { file, address: `127.0.0.1:${grpcPort}` };
    };
    const first = await configure('data', {
      mode: 'managed',
      interface: lab.serviceBridge,
      netns: lab.switchNs,
    });
    const start = async (file = first.file) => {
      const started = tracker.spawn(['--config', file]);
      await started.serving();
      return started;
    };
    let controller = await start();
    const address = first.address;
    const token = (await readFile(join(work, 'data', 'admin.token'), 'utf8')).trim();
    const inventory = new InventoryApi(address, token);
    const instances = instanceApi(address, token);
    const networks = new ServiceApi(networkPb.NetworkServiceService, networkPb, address, token);
    clients.push(inventory, instances, networks);

    await enrollLab(lab, inventory, networks);
    const images = imageApi(address, token);
    clients.push(images);
    const addImage = async (name: string, sizeMiB: number) =>
      upload(name, await buildLabImage(join(work, `${name}.raw`), { sizeMiB, marker: 'ingot-lab-os' }));
    const upload = async (name: string, built: BuiltLabImage) => {
      const created = await images.call('createImage', {
        image: {
          name,
          diskFormat: DiskFormat.DISK_FORMAT_RAW,
          visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
        },
      });
      await uploadImage(address, token, { id: created.id }, await readFile(built.path));
      return { ...built, id: created.id };
    };
    const image = vmImage ? await upload(IMAGE, vmImage) : await addImage(IMAGE, opts.imageMiB ?? 16);

    return {
      lab,
      get controller() {
        return controller;
      },
      address,
      token,
      netbootDir,
      async startPeer() {
        if (!database) throw new Error('peers need a shared PostgreSQL database: backend postgres');
        // An operator's dnsmasq as far as the peer knows: the first controller's, told to reload by PID.
        const peer = await configure(`peer-${randomUUID().slice(0, 8)}`, {
          mode: 'external',
          reloadCommand: ['sh', '-c', `kill -HUP "$(cat ${netbootDir}/dnsmasq.conf.pid)"`],
        });
        const started = await start(peer.file);
        return { process: started, address: peer.address };
      },
      image,
      inventory,
      instances,
      networks,
      async killController() {
        await controller.kill();
      },
      async restartController() {
        controller = await start();
        return controller;
      },
      addImage,
      boot: (name, o = {}) =>
        instances.call('createInstance', {
          name,
          request: {
            project: PROJECT,
            flavor: FLAVOR,
            image: o.image ?? IMAGE,
            hints: { compute_type: 'bare_metal' },
          },
          network: PROJECT_NETWORK,
        }),
      watch: (id, o = {}) => watchInstance(address, token, id, o),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** WatchInstance to its end: every event. Rejects with a CallError. */
export async function watchInstance(
  address: string,
  token: string,
  id: string,
  opts: { untilDeleted?: boolean; onEvent?: (e: instancePb.InstanceEvent) => void },
): Promise<instancePb.InstanceEvent[]> {
  const client = new instancePb.InstanceServiceClient(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const events: instancePb.InstanceEvent[] = [];
  try {
    const call = client.watchInstance({ id, project: '', untilDeleted: opts.untilDeleted ?? false }, md);
    for await (const event of call) {
      events.push(event as instancePb.InstanceEvent);
      opts.onEvent?.(event as instancePb.InstanceEvent);
    }
  } catch (err) {
    const failure = decodeError(err as grpc.ServiceError);
    if (failure.code === grpc.status.NOT_FOUND && opts.untilDeleted)
      return [{ instance: undefined, deleted: true, progressOnly: false }];
    throw failure;
  } finally {
    client.close();
  }
  return events;
}

/** WatchCapture to its end: every snapshot, each also handed to `onEvent`. Rejects with a CallError. */
export async function watchCapture(
  address: string,
  token: string,
  id: string,
  onEvent?: (c: capturePb.Capture) => void,
): Promise<capturePb.Capture[]> {
  const client = new capturePb.CaptureServiceClient(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const seen: capturePb.Capture[] = [];
  try {
    for await (const c of client.watchCapture({ id }, md)) {
      seen.push(c as capturePb.Capture);
      onEvent?.(c as capturePb.Capture);
    }
  } catch (err) {
    throw decodeError(err as grpc.ServiceError);
  } finally {
    client.close();
  }
  return seen;
}

/** A TCP port nobody had bound on `host` a moment ago (a controller restarts on the same ones). */
export function freeTcpPort(host = '0.0.0.0'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Registers a virtual lab with a controller as an operator would: the project and flavor, the lab's
 * Linux-bridge switch, the service network and one project network per project bridge (the first
 * is PROJECT_NETWORK), and every node with its BMC, switch port and disk.
 */
export async function enrollLab(
  lab: VirtualLab,
  inventory: InventoryApi,
  networks: ServiceApi<typeof networkPb.NetworkServiceService>,
): Promise<void> {
  await inventory.call('createProject', { project: { name: PROJECT } });
  await inventory.call('createFlavor', { flavor: { name: FLAVOR, vcpus: NODE_SIZE.cpus, ...NODE_SIZE } });
  await inventory.call('createSwitch', {
    switch: {
      name: 'lab-switch',
      address: 'localhost',
      driver: 'linux-bridge',
      driverOptions: { transport: 'local', netns: lab.switchNs },
    },
  });
  await networks.call('createNetwork', {
    network: {
      name: 'service',
      kind: networkPb.NetworkKind.NETWORK_KIND_SERVICE,
      vlanId: 10,
      bridge: lab.serviceBridge,
    },
  });
  for (const [i, bridge] of lab.projectNetworks.map((n) => n.bridge).entries()) {
    await networks.call('createNetwork', {
      network: {
        name: i === 0 ? PROJECT_NETWORK : `${PROJECT_NETWORK}-${i}`,
        projectId: PROJECT,
        vlanId: 20 + i,
        bridge,
      },
    });
  }
  for (const node of lab.nodes) {
    await inventory.call('createNode', {
      node: {
        name: node.name,
        ip: node.serviceIp,
        mac: node.mac,
        ...NODE_SIZE,
        bmcAddress: node.bmc.address,
        bmcUsername: node.bmc.username,
        bmcPassword: node.bmc.password,
        powerDriver: 'ipmitool',
        switchId: 'lab-switch',
        switchPort: node.switchPort,
        rootDisk: node.disk,
      },
    });
  }
}
