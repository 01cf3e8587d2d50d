/**
 * The virtual lab (tools/lab/virtual-lab.ts) driven by the real controller, with no provisioning
 * flow: each step the flow will take is done here by hand, through the controller's own handles
 * and APIs. Two nodes; node0 PXE-boots (IPMI power on, DHCP from the controller's dnsmasq in the
 * switch namespace, iPXE scripts over HTTP, the real agent), gets a lab image written by a deploy
 * task, moves to the project network and boots it from disk, answering a probe there; node1 boots
 * its blank disk and answers nothing. Everything the lab started is gone afterwards.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskFormat } from '../../build/gen/ingot/v1/image.ts';
import { NetbootState } from '../../build/gen/ingot/v1/inventory.ts';
import * as networkPb from '../../build/gen/ingot/v1/network.ts';
import * as powerPb from '../../build/gen/ingot/v1/power.ts';
import { TaskState } from '../../build/gen/ingot/v1/task.ts';
import { type BuiltLabImage, buildLabImage, deviceDigest } from '../../tools/lab/lab-image.ts';
import { isLive } from '../../tools/lab/processes.ts';
import { startVirtualLab, type VirtualLab, type VirtualNode } from '../../tools/lab/virtual-lab.ts';
import {
  agentApi,
  ensureAgentBinary,
  eventually,
  finishedTask,
  imageApi,
  taskApi,
  uploadImage,
} from '../support/agent.ts';
import {
  InventoryApi,
  removeDataDir,
  ServiceApi,
  startTestController,
  type TestController,
} from '../support/controller.ts';
import { enrollLab, freeTcpPort, PROJECT_NETWORK } from '../support/provisioning-lab.ts';

const { BootDevice, PowerAction } = powerPb;
const IMAGE_MIB = 16;
const MARKER = 'lab-os-1';
const SLOW_MS = 120_000;

describe('virtual bare-metal lab with the real controller', () => {
  let lab: VirtualLab;
  let ctl: TestController | undefined;
  let work: string;
  let inventory: InventoryApi;
  let power: ServiceApi<typeof powerPb.PowerServiceService>;
  let networks: ServiceApi<typeof networkPb.NetworkServiceService>;
  let image: BuiltLabImage;
  const nodeIds = new Map<string, string>();
  /** Every PID seen (BMC simulators, virtual nodes): all must be gone at the end. */
  const pids = new Set<number>();
  const timings: Record<string, number> = {};

  function since(start: number, what: string): void {
    timings[what] = Date.now() - start;
  }

  function logOf(node: VirtualNode): string {
    return lab.nodeLog(node);
  }

  async function waitForLog(node: VirtualNode, text: string): Promise<void> {
    await eventually(`${node.name} to log "${text}"`, () => {
      const pid = node.bmc.nodePid();
      if (pid) pids.add(pid);
      return logOf(node).includes(text) || undefined;
    });
  }

  beforeAll(async () => {
    const agentBinary = await ensureAgentBinary();
    const started = Date.now();
    lab = await startVirtualLab({ count: 2, agentBinary, diskMiB: 64 });
    since(started, 'lab up');
    for (const n of lab.nodes) pids.add(n.bmc.simPid);

    work = mkdtempSync(join(tmpdir(), 'ingot-vlab-test-'));
    chmodSync(work, 0o755);
    const httpPort = await freeTcpPort(lab.hostAddress);
    const configFile = join(work, 'controller.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        httpAdvertiseUrl: `http://${lab.hostAddress}:${httpPort}`,
        netboot: {
          mode: 'managed',
          dir: join(work, 'netboot'),
          interface: lab.serviceBridge,
          netns: lab.switchNs,
          subnet: lab.serviceSubnet,
        },
      }),
    );
    ctl = await startTestController({
      args: [
        '--config',
        configFile,
        '--grpc-listen',
        `${lab.hostAddress}:0`,
        '--http-listen',
        `${lab.hostAddress}:${httpPort}`,
      ],
    });
    inventory = new InventoryApi(ctl.address, ctl.token);
    power = new ServiceApi(powerPb.PowerServiceService, powerPb, ctl.address, ctl.token);
    networks = new ServiceApi(networkPb.NetworkServiceService, networkPb, ctl.address, ctl.token);

    await enrollLab(lab, inventory, networks);
    for (const n of await inventory.call('listNodes', {}).then((r) => r.nodes)) nodeIds.set(n.name, n.id);
    image = await buildLabImage(join(work, 'lab-os.img'), { sizeMiB: IMAGE_MIB, marker: MARKER });
  }, SLOW_MS);

  afterAll(async () => {
    inventory?.close();
    power?.close();
    networks?.close();
    // A controller that cannot stop must not keep the lab alive: the lab goes either way.
    const stopped = ctl?.stop();
    await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 20_000).unref())]);
    if (ctl) removeDataDir(ctl.dataDir);
    await lab?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
    // For the record (benchmarks measure; tests only assert).
    console.info(`virtual lab timings (ms): ${JSON.stringify(timings)}`);
  });

  it(
    'PXE-boots node0 into the agent, deploys a lab image, and boots it from disk on the project network',
    async () => {
      const node = lab.nodes[0] as VirtualNode;
      const nodeId = nodeIds.get(node.name) as string;
      const c = ctl as TestController;
      const { token } = await agentApi(c.address, c.token).call('createAgentToken', { node: node.name });
      await c.netboot?.prepare({
        nodeId,
        nodeName: node.name,
        mac: node.mac,
        ip: node.serviceIp,
        agentToken: token,
      });

      const poweredOn = Date.now();
      await power.call('setBootDevice', { node: node.name, device: BootDevice.BOOT_DEVICE_PXE });
      await power.call('setPower', { node: node.name, action: PowerAction.POWER_ACTION_ON });
      await c.netboot?.waitForBootFile(nodeId, { timeoutMs: 30_000 });
      since(poweredOn, 'power on to boot script fetched');
      await eventually('the agent to connect', async () => {
        const { agents } = await agentApi(c.address, c.token).call('listAgents', {});
        return agents.some((a) => a.nodeId === nodeId) || undefined;
      });
      since(poweredOn, 'power on to agent connected');
      const shown = await inventory.call('getNode', { id: nodeId });
      expect(shown.netbootState).toBe(NetbootState.NETBOOT_STATE_BOOT_FILE_FETCHED);
      expect(logOf(node)).toContain(`leased ${node.serviceIp}/24`);
      expect(logOf(node)).not.toContain(token);

      const deployStart = Date.now();
      const created = await imageApi(c.address, c.token).call('createImage', {
        image: { name: 'lab-os', diskFormat: DiskFormat.DISK_FORMAT_RAW },
      });
      const uploaded = await uploadImage(c.address, c.token, { id: created.id }, readFileSync(image.path));
      expect(uploaded.sha256).toBe(image.sha256);
      const task = await taskApi(c.address, c.token).call('createTask', {
        node: node.name,
        spec: { deploy: { image: uploaded.id, disk: node.disk } },
      });
      const done = await finishedTask(c.address, c.token, task.id);
      since(deployStart, 'upload and deploy');
      expect(done.task.state, JSON.stringify(done.task.error)).toBe(TaskState.TASK_STATE_SUCCEEDED);
      expect(await deviceDigest(node.disk, image.sizeBytes)).toBe(image.sha256);

      // Reset while still on the service network, so that the dying agent's connections close
      // cleanly; then to the project network, as the provisioning flow will do.
      const bootStart = Date.now();
      await power.call('setBootDevice', { node: node.name, device: BootDevice.BOOT_DEVICE_DISK });
      await power.call('setPower', { node: node.name, action: PowerAction.POWER_ACTION_RESET });
      await waitForLog(node, `booted ${MARKER} from disk`);
      since(bootStart, 'reset to booted from disk');
      const moved = await c.network.setNodeNetwork(node.name, PROJECT_NETWORK);
      expect(moved).toMatchObject({ networkName: PROJECT_NETWORK, changed: true });

      const probe = await lab.addProbe('br-proj');
      const address = node.projectIp.split('/')[0] as string;
      expect(await lab.netns.reaches(probe.ns, address)).toBe(true);
      // Off the service network now: the controller's side no longer reaches it.
      expect(await lab.netns.reaches(node.ns, lab.hostAddress, 1)).toBe(false);
    },
    SLOW_MS,
  );

  it(
    'a node whose disk holds no image says so and answers nobody',
    async () => {
      const node = lab.nodes[1] as VirtualNode;
      await (ctl as TestController).network.setNodeNetwork(node.name, PROJECT_NETWORK);
      await power.call('setBootDevice', { node: node.name, device: BootDevice.BOOT_DEVICE_DISK });
      await power.call('setPower', { node: node.name, action: PowerAction.POWER_ACTION_ON });
      await waitForLog(node, 'no bootable disk');
      const probe = await lab.addProbe('br-proj');
      expect(await lab.netns.reaches(probe.ns, node.projectIp.split('/')[0] as string, 1)).toBe(false);
      await power.call('setPower', { node: node.name, action: PowerAction.POWER_ACTION_OFF });
      expect(node.bmc.nodePid()).toBeUndefined();
    },
    SLOW_MS,
  );

  it(
    'stopping the lab leaves no namespace, loop device, interface or process behind',
    async () => {
      const described = lab.describe();
      let t = Date.now();
      await power.call('setPower', { node: lab.nodes[0]?.name, action: PowerAction.POWER_ACTION_OFF });
      await (ctl as TestController).stop();
      since(t, 'controller stop');
      t = Date.now();
      removeDataDir((ctl as TestController).dataDir);
      ctl = undefined;
      t = Date.now();
      await lab.stop();
      since(t, 'lab stop');
      await lab.stop(); // idempotent

      const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      expect(namespaces).not.toContain(lab.id);
      const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
      expect(links).not.toContain(lab.hostInterface);
      const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' });
      for (const file of described.loopFiles) expect(loops).not.toContain(file);
      for (const pid of pids) expect(isLive(pid), `pid ${pid}`).toBe(false);
      expect(existsSync(lab.dir)).toBe(false);
    },
    SLOW_MS,
  );
});
