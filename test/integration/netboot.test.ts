/**
 * Netboot with a real dnsmasq in a network namespace, managed by the controller's DnsmasqNetboot:
 * a DHCP client (busybox udhcpc) with a node's MAC gets its address and boot file name, other MACs
 * get nothing, TFTP (tftp-hpa) and HTTP fetches return that node's boot configuration with its
 * token, and entries are added, changed and removed without restarting dnsmasq or losing leases.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcMetrics } from '../../controller/src/api/metrics.ts';
import { DnsmasqNetboot } from '../../controller/src/drivers/netboot/dnsmasq-netboot.ts';
import { NetbootSettings } from '../../controller/src/drivers/netboot/netboot-config.ts';
import { createHttpServer } from '../../controller/src/http/server.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import { Node } from '../../controller/src/store/entities/node.ts';
import { NetnsLab } from '../../tools/lab/netns-lab.ts';
import {
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';

/** What the chain script asks iPXE to do: its own `${mac:hexhyp}` setting, expanded by iPXE. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: an iPXE setting
const CHAIN_LINE = 'chain ipxe/${mac:hexhyp}.ipxe';

const SERVER_IP = '10.77.0.1';
const NODE1 = { mac: '52:54:00:77:00:11', ip: '10.77.0.11', token: 'tok-node1-0123456789abcdef' };
const NODE2 = { mac: '52:54:00:77:00:12', ip: '10.77.0.12', token: 'tok-node2-fedcba9876543210' };
const STRANGER = '52:54:00:77:00:99';

async function eventually<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('netboot with dnsmasq in a network namespace', () => {
  let lab: NetnsLab;
  let serverNs: string;
  let clientNs: string;
  let work: string;
  let ctl: TestController;
  let netboot: DnsmasqNetboot;
  let http: Server;
  let httpBase: string;
  const ids: Record<string, string> = {};

  /** One DHCP exchange from the client namespace, posing as `mac` (and as iPXE with option 175). */
  async function dhcp(
    mac: string,
    opts: { ipxe?: boolean } = {},
  ): Promise<Record<string, string> | undefined> {
    await lab.exec(clientNs, ['ip', 'link', 'set', 'dev', 'eth0', 'address', mac]);
    const r = await lab.exec(clientNs, [
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-n',
      '-q',
      '-f',
      '-t',
      '2',
      '-T',
      '1',
      '-A',
      '1',
      '-s',
      join(work, 'udhcpc.sh'),
      ...(opts.ipxe ? ['-x', '0xaf:0101'] : []),
    ]);
    const bound = r.stdout.split('\n').find((l) => l.startsWith('bound '));
    if (!bound) return undefined;
    return Object.fromEntries(
      bound
        .slice('bound '.length)
        .split(' ')
        .map((kv) => kv.split('=') as [string, string]),
    );
  }

  /** A TFTP download from the client namespace, as a PXE ROM does; undefined when the server refuses. */
  async function tftp(file: string): Promise<string | undefined> {
    const out = join(work, 'tftp-download');
    rmSync(out, { force: true });
    await lab.exec(clientNs, ['ip', 'addr', 'replace', '10.77.0.50/24', 'dev', 'eth0']);
    // tftp-hpa exits 0 even when the server answers with an error; it says so on its output.
    const r = await lab.exec(clientNs, ['tftp', SERVER_IP, '-c', 'get', file, out], { cwd: work });
    await lab.exec(clientNs, ['ip', 'addr', 'flush', 'dev', 'eth0']);
    if (/Error code|Transfer timed out/.test(r.stdout + r.stderr)) return undefined;
    return readFileSync(out, 'utf8');
  }

  const nodeState = async (id: string) =>
    (await ctl.db.fork().findOne(Node, { id }, { fields: ['netbootState'] }))?.netbootState ?? null;

  beforeAll(async () => {
    lab = await NetnsLab.create('nb');
    serverNs = await lab.namespace('srv');
    clientNs = await lab.namespace('cli');
    await lab.veth(
      { ns: serverNs, name: 'eth0', cidr: `${SERVER_IP}/24` },
      { ns: clientNs, name: 'eth0', mac: STRANGER },
    );
    work = mkdtempSync(join(tmpdir(), 'ingot-netboot-'));
    chmodSync(work, 0o755);
    writeFileSync(
      join(work, 'udhcpc.sh'),
      '#!/bin/sh\n[ "$1" = bound ] && echo "bound ip=$ip boot_file=$boot_file siaddr=$siaddr"\nexit 0\n',
      { mode: 0o755 },
    );

    ctl = await startTestController();
    const inventory = new InventoryApi(ctl.address, ctl.token);
    for (const [name, n] of [
      ['node1', NODE1],
      ['node2', NODE2],
    ] as const) {
      ids[name] = (
        await inventory.call('createNode', {
          node: { name, ip: n.ip, mac: n.mac, cpus: 1, ramMb: 512, diskGb: 1, bmcAddress: '127.0.0.1' },
        })
      ).id;
    }
    inventory.close();

    netboot = new DnsmasqNetboot({
      config: NetbootSettings.parse({
        mode: 'managed',
        dir: join(work, 'netboot'),
        interface: 'eth0',
        netns: serverNs,
        subnet: '10.77.0.0/24',
        kernelArgs: 'console=ttyS0',
      }),
      db: ctl.db,
      log: createLogger('silent'),
      controllerUrl: `http://${SERVER_IP}:7780`,
      controllerGrpc: `${SERVER_IP}:7700`,
    });
    await netboot.start();
    http = createHttpServer({ metrics: new RpcMetrics(), ready: () => true, routes: netboot.routes() });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    httpBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await netboot?.stop();
    http?.close();
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    await lab?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('gives a prepared node its address and boot file name, and nothing to another MAC', async () => {
    await netboot.prepare({
      nodeId: ids.node1 as string,
      nodeName: 'node1',
      mac: NODE1.mac,
      ip: NODE1.ip,
      agentToken: NODE1.token,
    });
    expect(await nodeState(ids.node1 as string)).toBe('pending');

    expect(await dhcp(NODE1.mac)).toEqual({ ip: NODE1.ip, boot_file: 'undionly.kpxe', siaddr: SERVER_IP });
    expect(await dhcp(NODE1.mac, { ipxe: true })).toMatchObject({
      ip: NODE1.ip,
      boot_file: `http://${SERVER_IP}:7780/netboot/boot.ipxe`,
    });
    expect(await dhcp(STRANGER)).toBeUndefined();
    await eventually(
      async () => ((await nodeState(ids.node1 as string)) === 'leased' ? true : undefined),
      'leased',
    );
  });

  it('times out naming the step the node reached', async () => {
    const err = await netboot
      .waitForBootFile(ids.node1 as string, { timeoutMs: 200 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      reason: 'NETBOOT_TIMEOUT',
      message: expect.stringContaining('took its DHCP lease but did not fetch its boot file'),
    });
  });

  it('serves the node its own boot configuration over TFTP, with the controller address and its token', async () => {
    const config = await tftp('pxelinux.cfg/01-52-54-00-77-00-11');
    expect(config).toContain('KERNEL bootstrap/vmlinuz');
    expect(config).toContain(
      `APPEND quiet ingot.controller=${SERVER_IP}:7700 ingot.http=http://${SERVER_IP}:7780 ingot.node=${ids.node1} ingot.token=${NODE1.token} console=ttyS0`,
    );
    await netboot.waitForBootFile(ids.node1 as string, { timeoutMs: 30_000 });
    expect(await nodeState(ids.node1 as string)).toBe('fetched');

    const script = await tftp('ipxe/52-54-00-77-00-11.ipxe');
    expect(script).toMatch(/^#!ipxe\n/);
    expect(await tftp('pxelinux.cfg/01-52-54-00-77-00-99')).toBeUndefined();
  });

  it('serves iPXE scripts over the controller HTTP: the chain script, a node’s own, nothing for strangers', async () => {
    await netboot.prepare({
      nodeId: ids.node2 as string,
      nodeName: 'node2',
      mac: NODE2.mac,
      ip: NODE2.ip,
      agentToken: NODE2.token,
    });
    const chain = await fetch(`${httpBase}/netboot/boot.ipxe`);
    expect(await chain.text()).toContain(CHAIN_LINE);
    const own = await fetch(`${httpBase}/netboot/ipxe/52-54-00-77-00-12.ipxe`);
    expect(own.status).toBe(200);
    const text = await own.text();
    expect(text).toContain(
      `kernel http://${SERVER_IP}:7780/boot/vmlinuz initrd=initrd.img quiet ingot.controller=`,
    );
    expect(text).toContain(`ingot.token=${NODE2.token}`);
    expect(text).toContain(`initrd --name initrd.img http://${SERVER_IP}:7780/boot/initrd.img`);
    expect((await fetch(`${httpBase}/netboot/ipxe/52-54-00-77-00-99.ipxe`)).status).toBe(404);
    await netboot.waitForBootFile(ids.node2 as string, { timeoutMs: 30_000 });
  });

  it('applies a changed address and a removal without restarting dnsmasq or losing leases', async () => {
    const pid = netboot.dnsmasqPid;
    expect(pid).toBeGreaterThan(0);
    expect(await dhcp(NODE2.mac)).toMatchObject({ ip: NODE2.ip });
    const leasesBefore = readFileSync(netboot.paths.leaseFile, 'utf8');
    expect(leasesBefore).toContain(NODE2.mac);

    // A new address for node2: a changed host entry needs a reload, which must not crash dnsmasq.
    await netboot.prepare({
      nodeId: ids.node2 as string,
      nodeName: 'node2',
      mac: NODE2.mac,
      ip: '10.77.0.22',
      agentToken: NODE2.token,
    });
    expect(await dhcp(NODE2.mac)).toMatchObject({ ip: '10.77.0.22' });

    // node1 was served; removing it needs a SIGHUP: the dnsmasq 2.90 crash happens only with tagged entries.
    await netboot.remove({ nodeId: ids.node1 as string, mac: NODE1.mac });
    expect(await dhcp(NODE1.mac)).toBeUndefined();
    expect(await nodeState(ids.node1 as string)).toBeNull();
    expect(await tftp('pxelinux.cfg/01-52-54-00-77-00-11')).toBeUndefined();
    expect(await dhcp(NODE2.mac)).toMatchObject({ ip: '10.77.0.22' });
    expect(netboot.dnsmasqPid).toBe(pid);
    expect(netboot.supervisor?.restarts).toBe(0);
    expect(readFileSync(netboot.paths.leaseFile, 'utf8')).toContain(NODE2.mac);
  });

  it('restarts dnsmasq when it dies, and the prepared nodes are served again', async () => {
    const pid = netboot.dnsmasqPid as number;
    const restarted = new Promise((r) => netboot.supervisor?.once('restarted', r));
    process.kill(pid, 'SIGKILL');
    await restarted;
    expect(netboot.dnsmasqPid).not.toBe(pid);
    expect(await dhcp(NODE2.mac)).toMatchObject({ ip: '10.77.0.22' });
  });

  it('refuses entries it cannot serve, and a directory dnsmasq could not read', async () => {
    const entry = {
      nodeId: ids.node1 as string,
      nodeName: 'node1',
      mac: NODE1.mac,
      ip: NODE1.ip,
      agentToken: NODE1.token,
    };
    await expect(netboot.prepare({ ...entry, ip: '192.168.1.5' })).rejects.toMatchObject({
      reason: 'INVALID_ARGUMENT',
      violations: [{ field: 'ip', description: expect.stringContaining('10.77.0.0/24') }],
    });
    await expect(netboot.prepare({ ...entry, agentToken: 'has spaces in it' })).rejects.toMatchObject({
      violations: [{ field: 'agent_token', description: expect.any(String) }],
    });

    const hidden = join(work, 'private');
    mkdirSync(hidden, { mode: 0o700 });
    const unreachable = new DnsmasqNetboot({
      config: NetbootSettings.parse({
        mode: 'external',
        dir: join(hidden, 'netboot'),
        subnet: '10.77.0.0/24',
      }),
      db: ctl.db,
      log: createLogger('silent'),
      controllerUrl: 'http://10.77.0.1:7780',
      controllerGrpc: '10.77.0.1:7700',
    });
    await expect(unreachable.start()).rejects.toMatchObject({ reason: 'NETBOOT_DIR_NOT_READABLE' });

    const badOption = new DnsmasqNetboot({
      config: NetbootSettings.parse({
        mode: 'managed',
        dir: join(work, 'bad'),
        interface: 'eth0',
        netns: serverNs,
        subnet: '10.77.0.0/24',
        extraOptions: ['no-such-option'],
      }),
      db: ctl.db,
      log: createLogger('silent'),
      controllerUrl: 'http://10.77.0.1:7780',
      controllerGrpc: '10.77.0.1:7700',
    });
    const err = await badOption.start().catch((e: unknown) => e);
    expect(err).toMatchObject({
      reason: 'DNSMASQ_START_FAILED',
      message: expect.stringContaining('bad option'),
    });
    await badOption.stop();
  });

  it('external mode writes the files and a configuration snippet, and runs the reload command on removal', async () => {
    const dir = join(work, 'external');
    const marker = join(work, 'reloaded');
    const external = new DnsmasqNetboot({
      config: NetbootSettings.parse({
        mode: 'external',
        dir,
        subnet: '10.77.0.0/24',
        reloadCommand: ['touch', marker],
      }),
      db: ctl.db,
      log: createLogger('silent'),
      controllerUrl: 'http://10.77.0.1:7780',
      controllerGrpc: '10.77.0.1:7700',
    });
    await external.start();
    try {
      expect(external.dnsmasqPid).toBeUndefined();
      const conf = readFileSync(join(dir, 'dnsmasq.conf'), 'utf8');
      expect(conf).toContain(`dhcp-hostsdir=${join(dir, 'hosts')}`);
      expect(conf).toContain('dhcp-ignore=tag:!known');
      expect(conf).not.toContain('set:'.concat('node'));
      expect(conf).not.toMatch(/^port=0/m);
      await external.prepare({
        nodeId: ids.node1 as string,
        nodeName: 'node1',
        mac: NODE1.mac,
        ip: NODE1.ip,
        agentToken: NODE1.token,
      });
      expect(readFileSync(join(dir, 'hosts', '52-54-00-77-00-11'), 'utf8')).toBe(
        `${NODE1.mac},${NODE1.ip},node1\n`,
      );
      await external.remove({ nodeId: ids.node1 as string, mac: NODE1.mac });
      expect(readFileSync(marker, 'utf8')).toBe('');
    } finally {
      await external.stop();
    }
  });
});
