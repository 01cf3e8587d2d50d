/**
 * `make bench-network`:
 *
 * - Juniper: 50 access ports moved to another VLAN on the Junos test switch
 *   (test/fakes/junos-netconf-server.ts, NETCONF over SSH on loopback), as one batch (one session,
 *   one confirmed commit, one read-back, one confirming commit) against the baseline of one
 *   session and commit per port (what a driver without batching does). Measured twice: with the
 *   test switch committing instantly (protocol and SSH cost only) and with each commit taking
 *   BENCH_NETWORK_COMMIT_MS (a stand-in for a real switch, where commits take seconds).
 * - dnsmasq: with 1,000 host entries in its hostsdir, the latency of removing one entry (file
 *   removed, SIGHUP, reload confirmed by dnsmasq's log) and of adding one (inotify pick-up
 *   confirmed), through DnsmasqNetboot, and of a dnsmasq restart. dnsmasq runs in a namespace.
 *
 * Progress goes to stderr; stdout gets one line of figures, the batch's speed-up first.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DnsmasqNetboot } from '../../controller/src/drivers/netboot/dnsmasq-netboot.ts';
import { NetbootSettings } from '../../controller/src/drivers/netboot/netboot-config.ts';
import { JuniperDriver } from '../../controller/src/drivers/network/juniper/juniper-driver.ts';
import type { PortChange, SwitchTarget } from '../../controller/src/drivers/network/network-driver.ts';
import { Secret } from '../../controller/src/drivers/power/power-driver.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import { Node } from '../../controller/src/store/entities/node.ts';
import { openDatabase } from '../../controller/src/store/orm.ts';
import { FakeJunosSwitch } from '../../test/fakes/junos-netconf-server.ts';
import { NetnsLab } from '../../tools/lab/netns-lab.ts';

const PORTS = Number(process.env.BENCH_NETWORK_PORTS ?? 50);
const ROUNDS = Number(process.env.BENCH_NETWORK_ROUNDS ?? 5);
const COMMIT_MS = Number(process.env.BENCH_NETWORK_COMMIT_MS ?? 100);
const HOSTS = Number(process.env.BENCH_NETWORK_HOSTS ?? 1000);
const SAMPLES = Number(process.env.BENCH_NETWORK_SAMPLES ?? 20);

const log = (line: string) => process.stderr.write(`bench-network: ${line}\n`);

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const ports = Array.from({ length: PORTS }, (_, i) => `ge-0/0/${i}`);

async function juniper(commitDelayMs: number): Promise<{ batchMs: number; perPortMs: number }> {
  const sw = await FakeJunosSwitch.start({
    ports: Object.fromEntries(ports.map((p) => [p, 100])),
    vlans: [
      { name: 'service', id: 100 },
      { name: 'tenant', id: 200 },
    ],
    commitDelayMs,
  });
  const stop = () => sw.stop();
  undo.add(stop);
  try {
    const driver = new JuniperDriver();
    const target: SwitchTarget = {
      name: 'bench',
      host: '127.0.0.1',
      port: sw.port,
      username: 'netops',
      password: new Secret('juniper123'),
      privateKey: new Secret(''),
      hostKeyFingerprint: sw.hostKeyFingerprint,
      options: {},
    };
    const to = (vlanId: number): PortChange[] =>
      ports.map((port) => ({ port, network: { name: `v${vlanId}`, vlanId, bridge: '' } }));
    const batch: number[] = [];
    const perPort: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Every round: all ports to the tenant VLAN in one batch, then back one commit per port.
      const commits = sw.commits.length;
      batch.push(await timed(() => driver.applyPortChanges(target, to(200))));
      if (sw.commits.length - commits !== 2)
        throw new Error('the batch did not take exactly one commit pair');
      perPort.push(
        await timed(async () => {
          for (const change of to(100)) await driver.applyPortChanges(target, [change]);
        }),
      );
    }
    const result = { batchMs: percentile(batch, 50), perPortMs: percentile(perPort, 50) };
    log(
      `juniper, commits ${commitDelayMs} ms: ${PORTS} ports in one batch ${result.batchMs.toFixed(0)} ms, one commit per port ${result.perPortMs.toFixed(0)} ms (median of ${ROUNDS})`,
    );
    return result;
  } finally {
    undo.delete(stop);
    await sw.stop();
  }
}

async function dnsmasq(): Promise<{
  removeP50: number;
  removeP95: number;
  addP50: number;
  addP95: number;
  restartMs: number;
}> {
  const lab = await NetnsLab.create('bn');
  const work = mkdtempSync(join(tmpdir(), 'bench-network-'));
  chmodSync(work, 0o755);
  const db = await openDatabase({ kind: 'pglite', dir: join(work, 'db') }, createLogger('silent'));
  let netboot: DnsmasqNetboot | undefined;
  const cleanup = async () => {
    await netboot?.stop();
    await lab.destroy();
    rmSync(work, { recursive: true, force: true });
  };
  undo.add(cleanup);
  try {
    const ns = await lab.namespace('srv');
    await lab.veth({ ns, name: 'eth0', cidr: '10.88.0.1/20' }, { ns, name: 'eth1' });
    const mac = (i: number) =>
      `52:54:00:88:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const ip = (i: number) => `10.88.${(i + 10) >> 8}.${(i + 10) & 0xff}`;
    const em = db.fork();
    const total = HOSTS + SAMPLES;
    for (let i = 0; i < total; i++) {
      em.create(Node, {
        name: `bench-${i}`,
        ip: ip(i),
        mac: mac(i),
        cpus: 1,
        ramMb: 1,
        diskGb: 1,
        bmcAddress: '127.0.0.1',
        bmcUsername: '',
        powerDriver: 'ipmitool',
        switchPort: '',
        provisionState: 'available',
        maintenance: false,
        maintenanceReason: '',
        lastError: '',
      } as never);
    }
    await em.flush();
    const rows = await db.fork().find(Node, {}, { orderBy: { name: 'asc' } });
    const byName = new Map(rows.map((r) => [r.name, r]));
    netboot = new DnsmasqNetboot({
      config: NetbootSettings.parse({
        mode: 'managed',
        dir: join(work, 'netboot'),
        interface: 'eth0',
        netns: ns,
        subnet: '10.88.0.0/20',
        applyTimeoutMs: 60_000,
      }),
      db,
      log: createLogger('silent'),
      controllerUrl: 'http://10.88.0.1:7780',
      controllerGrpc: '10.88.0.1:7700',
    });
    await netboot.start();
    const entry = (i: number) => {
      const row = byName.get(`bench-${i}`) as Node;
      return { nodeId: row.id, nodeName: row.name, mac: row.mac, ip: row.ip, agentToken: `bench-token-${i}` };
    };
    const fill = await timed(async () => {
      for (let i = 0; i < HOSTS; i++) await (netboot as DnsmasqNetboot).prepare(entry(i));
    });
    log(`${HOSTS} host entries written and picked up one by one in ${fill.toFixed(0)} ms`);
    const add: number[] = [];
    const remove: number[] = [];
    for (let s = 0; s < SAMPLES; s++) {
      const i = HOSTS + s;
      add.push(await timed(() => (netboot as DnsmasqNetboot).prepare(entry(i))));
      remove.push(
        await timed(() => (netboot as DnsmasqNetboot).remove({ nodeId: entry(i).nodeId, mac: entry(i).mac })),
      );
    }
    const supervisor = netboot.supervisor;
    if (!supervisor) throw new Error('no supervisor');
    const restartMs = await timed(async () => {
      await supervisor.stop();
      await supervisor.start();
    });
    const r = {
      removeP50: percentile(remove, 50),
      removeP95: percentile(remove, 95),
      addP50: percentile(add, 50),
      addP95: percentile(add, 95),
      restartMs,
    };
    log(
      `dnsmasq with ${HOSTS} entries: remove (SIGHUP reload, confirmed) p50 ${r.removeP50.toFixed(1)} ms p95 ${r.removeP95.toFixed(1)} ms; ` +
        `add (inotify, confirmed) p50 ${r.addP50.toFixed(1)} ms p95 ${r.addP95.toFixed(1)} ms; restart ${restartMs.toFixed(0)} ms`,
    );
    return r;
  } finally {
    undo.delete(cleanup);
    await db.close();
    await cleanup();
  }
}

/** What a SIGTERM (run.sh's cleanup, Ctrl-C) must still undo: the namespaces and dnsmasq. */
const undo = new Set<() => Promise<void>>();
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void Promise.allSettled([...undo].map((fn) => fn())).then(() => process.exit(130));
  });
}

log(
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
const instant = await juniper(0);
const slow = await juniper(COMMIT_MS);
const d = await dnsmasq();
const ratio = (r: { batchMs: number; perPortMs: number }) => (r.perPortMs / r.batchMs).toFixed(1);
process.stdout.write(
  `network: ${PORTS}-port VLAN flip, one batched commit vs one commit per port ${ratio(instant)}x faster` +
    ` (batch ${instant.batchMs.toFixed(0)} ms, per-port ${instant.perPortMs.toFixed(0)} ms;` +
    ` with ${COMMIT_MS} ms commits ${ratio(slow)}x: ${slow.batchMs.toFixed(0)} vs ${slow.perPortMs.toFixed(0)} ms)` +
    ` | dnsmasq ${HOSTS} hosts: reload on removal p50 ${d.removeP50.toFixed(1)} ms p95 ${d.removeP95.toFixed(1)} ms,` +
    ` new entry p50 ${d.addP50.toFixed(1)} ms p95 ${d.addP95.toFixed(1)} ms, restart ${d.restartMs.toFixed(0)} ms\n`,
);
