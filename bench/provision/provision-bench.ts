/**
 * `make bench-provision`: how long a wave of bare-metal boots takes, from the first CreateInstance
 * to the last instance ACTIVE, for 1, 10 and 50 virtual nodes at once, and where the time goes.
 *
 *   node bench/provision/provision-bench.ts [--sizes 1,10,50] [--image-mib 16] [--backend postgres]
 *
 * PostgreSQL by default, not the embedded PGlite: PGlite runs inside the controller's event loop,
 * and with 50 nodes booting at once on 2 cores the controller's HTTP listener then answers so late
 * (GET /healthz p50 0.5 s, max 2.7 s, against 0.05 s and 0.35 s on PostgreSQL) that nodes' iPXE
 * script fetches (5 s timeout, 3 tries) give up and their instances wait out agentTimeoutMs.
 * `--backend pglite` measures that.
 *
 * For each size it starts a virtual lab of that many nodes (test/support/provisioning-lab.ts:
 * namespaces, Linux bridges, ipmi_sim BMCs, loop-device disks, nodes that PXE-boot through the
 * controller's dnsmasq and run the real agent; the controller as its own process), boots one
 * instance per node at once, follows each to the end with WatchInstance, and stops the lab before
 * the next size. Every instance must reach ACTIVE; otherwise the run fails naming each one's
 * state, reason, failed step and the end of its node's log.
 *
 * Reported per size, from the instances' recorded steps (InstanceStep start/end, written by the
 * controller): the median and the maximum across instances of each deploy step, of the queueing
 * from create to the first step, and of the time between steps; the wall time as the client saw
 * it; memory (machine-wide and the lab's processes by kind) and CPU (the controller's, the
 * machine's). A tenant's retry of a boot refused because concurrent boots took every candidate is
 * counted, not hidden.
 *
 * The last line on stdout: `provision: ratio 50/1 <x> (wall 1: <a> s, 10: <b> s, 50: <c> s;
 * slowest step at 50: <name> p50 <d> s)`, the ratio being the largest size's wall time over the
 * smallest's in the same run (1.0 would be perfect scaling). Progress goes to stderr.
 *
 * Needs root (namespaces, loop devices), and for `--backend postgres` INGOT_TEST_PG_URL (run.sh
 * starts a throwaway cluster unless `--backend pglite` is given). Everything it starts is stopped by PID and removed, also on
 * failure and on SIGTERM/SIGINT.
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { type Instance, InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { DEPLOY_STEPS } from '../../controller/src/domain/flows.ts';
import type { CallError } from '../../test/support/controller.ts';
import { type ProvisioningLab, startProvisioningLab } from '../../test/support/provisioning-lab.ts';
import { HttpProbe, type ProbeReport } from './http-probe.ts';
import { type ProcessKind, type ResourceReport, ResourceSampler } from './resource-sampler.ts';

/** A tenant retries a boot refused because concurrent boots took every candidate; this many times. */
const CREATE_ATTEMPTS = 5;
/** A safety net, not an expectation: a wave still running after this fails the run. */
const WAVE_TIMEOUT_MS = 20 * 60_000;
const MiB = 2 ** 20;

const say = (text: string) => process.stderr.write(`bench-provision: ${text}\n`);

interface Options {
  sizes: number[];
  imageMiB: number;
  backend: 'pglite' | 'postgres';
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1,10,50' },
      'image-mib': { type: 'string', default: '16' },
      backend: { type: 'string', default: 'postgres' },
    },
    strict: true,
  });
  const sizes = values.sizes.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 200))
    throw new Error(`--sizes takes whole numbers from 1 to 200, comma-separated; got ${values.sizes}`);
  const imageMiB = Number(values['image-mib']);
  // The lab's disks are 64 MiB.
  if (!Number.isInteger(imageMiB) || imageMiB < 1 || imageMiB > 60)
    throw new Error(`--image-mib takes a whole number from 1 to 60 (the lab's disks are 64 MiB)`);
  const backend = values.backend;
  if (backend !== 'pglite' && backend !== 'postgres')
    throw new Error(`--backend is pglite or postgres; got ${backend}`);
  return { sizes, imageMiB, backend };
}

/** One instance's boot as the client saw it and as the controller recorded it. */
interface Boot {
  name: string;
  /** Client clock, ms since the wave started: CreateInstance answered, ACTIVE (or the end) seen. */
  createdAtMs: number;
  endedAtMs: number;
  createRetries: number;
  final: Instance;
}

interface WaveResult {
  size: number;
  labSetupS: number;
  wallS: number;
  boots: Boot[];
  resources: ResourceReport;
  http: ProbeReport;
  load: [number, number];
}

/** Set on SIGTERM/SIGINT: the run stops where it is and cleans up. */
const stopping = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    say(`${signal}: stopping`);
    stopping.abort(new Error(`stopped by ${signal}`));
  });
}

/**
 * What a virtual node logs when its PXE boot gave up (DHCP or HTTP unanswered). Its instance then
 * waits for an agent that never comes (provisioning.agentTimeoutMs, 10 min) before a power cycle:
 * the wave is failed at once instead, since its wall time would measure that timeout.
 */
const PXE_GAVE_UP = 'no bootable device';

/** `work`, unless `signal` aborts first (then rejects with its reason; `work` is left to be dropped). */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root: network namespaces and loop devices');
  const opts = parseOptions(process.argv.slice(2));
  say(
    `sizes ${opts.sizes.join(', ')}; ${opts.imageMiB} MiB image; ${opts.backend}; ` +
      `${cpus().length} cores, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  const results: WaveResult[] = [];
  for (const size of opts.sizes) {
    stopping.signal.throwIfAborted();
    const result = await runWave(size, opts);
    results.push(result);
    process.stdout.write(`${report(result, opts)}\n`);
  }
  process.stdout.write(`${summary(results)}\n`);
}

async function runWave(size: number, opts: Options): Promise<WaveResult> {
  say(`${size} node(s): starting the lab`);
  const setupStart = performance.now();
  const p = await unlessAborted(
    startProvisioningLab({ count: size, backend: opts.backend, imageMiB: opts.imageMiB }),
    stopping.signal,
  );
  let sampler: ResourceSampler | undefined;
  let probe: HttpProbe | undefined;
  try {
    const labSetupS = (performance.now() - setupStart) / 1000;
    say(`${size} node(s): lab ready in ${labSetupS.toFixed(1)} s; booting ${size} instance(s) at once`);
    sampler = new ResourceSampler({
      controllerPid: p.controller.pid,
      labDir: p.lab.dir,
      controllerHost: p.lab.hostAddress,
      bmcPids: p.lab.nodes.map((n) => n.bmc.simPid),
    });
    const httpPort = (await p.controller.serving()).http.split(':').at(-1);
    probe = new HttpProbe(`http://${p.lab.hostAddress}:${httpPort}/healthz`);
    const loadBefore = loadavg()[0] ?? 0;
    sampler.start();
    probe.start();
    const gaveUp = new AbortController();
    const deadline = AbortSignal.any([stopping.signal, gaveUp.signal, AbortSignal.timeout(WAVE_TIMEOUT_MS)]);
    const started = performance.now();
    const names = Array.from({ length: size }, (_, i) => `bench-${i}`);
    let ended = 0;
    const watchdog = setInterval(() => {
      const stuck = p.lab.nodes.filter((n) => p.lab.nodeLog(n).includes(PXE_GAVE_UP)).map((n) => n.name);
      if (stuck.length > 0 && !gaveUp.signal.aborted)
        gaveUp.abort(new Error(`the PXE boot of ${stuck.length} node(s) gave up: ${stuck.join(', ')}`));
      say(
        `${size} node(s): ${ended} of ${size} ended after ${((performance.now() - started) / 1000).toFixed(0)} s`,
      );
    }, 5_000);
    let boots: Boot[];
    try {
      boots = await unlessAborted(
        Promise.all(
          names.map(async (name) => {
            const { instance, retries } = await createWithRetries(p, name);
            const createdAtMs = performance.now() - started;
            const events = await p.watch(instance.id);
            const endedAtMs = performance.now() - started;
            ended++;
            const final =
              events.at(-1)?.instance ?? (await p.instances.call('getInstance', { id: instance.id }));
            return { name, createdAtMs, endedAtMs, createRetries: retries, final };
          }),
        ),
        deadline,
      );
    } catch (err) {
      clearInterval(watchdog);
      if (!stopping.signal.aborted) {
        say(`${size} node(s): failed after ${((performance.now() - started) / 1000).toFixed(0)} s`);
        say(`controller HTTP meanwhile: ${describeProbe(await probe.stop())}`);
        await describeUnfinished(p, names);
      }
      throw err;
    } finally {
      clearInterval(watchdog);
    }
    const wallS = Math.max(...boots.map((b) => b.endedAtMs)) / 1000;
    const resources = sampler.stop();
    sampler = undefined;
    const http = await probe.stop();
    failUnlessActive(p, boots);
    say(`${size} node(s): all ACTIVE, wall ${wallS.toFixed(1)} s; stopping the lab`);
    return { size, labSetupS, wallS, boots, resources, http, load: [loadBefore, loadavg()[0] ?? 0] };
  } finally {
    sampler?.stop();
    await probe?.stop();
    await p.stop();
  }
}

function describeProbe(h: ProbeReport): string {
  return (
    `GET /healthz every 250 ms: p50 ${h.p50Ms.toFixed(0)} ms, max ${h.maxMs.toFixed(0)} ms, ` +
    `${h.over1s} of ${h.requests} over 1 s, ${h.timeouts} unanswered within 10 s`
  );
}

/** CreateInstance, retried as a tenant would when concurrent boots took every candidate. */
async function createWithRetries(
  p: ProvisioningLab,
  name: string,
): Promise<{ instance: Instance; retries: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return { instance: await p.boot(name), retries: attempt - 1 };
    } catch (err) {
      const e = err as CallError;
      const raced = e.code === 8 && /concurrent requests/.test(e.message ?? '');
      if (!raced || attempt >= CREATE_ATTEMPTS)
        throw new Error(`CreateInstance ${name}: ${e.message ?? String(err)} (code ${e.code})`);
    }
  }
}

/** Every instance that did not end ACTIVE, with what it says and its node's last lines; then throws. */
function failUnlessActive(p: ProvisioningLab, boots: Boot[]): void {
  const failed = boots.filter((b) => b.final.state !== InstanceState.INSTANCE_STATE_ACTIVE);
  if (failed.length === 0) return;
  for (const b of failed) say(describeInstance(p, b.final));
  throw new Error(`${failed.length} of ${boots.length} instance(s) did not reach ACTIVE (see above)`);
}

async function describeUnfinished(p: ProvisioningLab, names: string[]): Promise<void> {
  for (const name of names) {
    try {
      const instance = await p.instances.call('getInstance', { id: name, project: 'acme' });
      if (instance.state !== InstanceState.INSTANCE_STATE_ACTIVE) say(describeInstance(p, instance));
    } catch (err) {
      say(`${name}: ${(err as CallError).message ?? String(err)}`);
    }
  }
}

function describeInstance(p: ProvisioningLab, i: Instance): string {
  const state = Object.entries(InstanceState).find(([, v]) => v === i.state)?.[0] ?? String(i.state);
  const steps = i.steps.map((s) => `${s.name} ${s.state}${s.message ? ` (${s.message})` : ''}`).join(', ');
  const node = p.lab.nodes.find((n) => n.name === i.hostName);
  const tail = node
    ? p.lab
        .nodeLog(node)
        .trimEnd()
        .split('\n')
        .slice(-12)
        .map((l) => `    ${l}`)
        .join('\n')
    : '    (no node)';
  return (
    `${i.name} on ${i.hostName || '(no node)'}: ${state}, reason "${i.reason}", step ${i.step || '-'}, ` +
    `retries ${i.retries}\n  steps: ${steps || '(none)'}\n  node log:\n${tail}`
  );
}

const seconds = (a: Date | undefined, b: Date | undefined) =>
  a && b ? (b.getTime() - a.getTime()) / 1000 : Number.NaN;

/** Per instance: each step's duration (summed when a retry ran it again), queue, gaps and total. */
function phases(i: Instance): Map<string, number> {
  const out = new Map<string, number>();
  const deploy = i.steps.filter((s) => s.flow === 'deploy');
  for (const s of deploy) out.set(s.name, (out.get(s.name) ?? 0) + seconds(s.startTime, s.endTime));
  const first = deploy[0];
  const last = deploy.at(-1);
  const queue = seconds(i.createTime, first?.startTime);
  const total = seconds(i.createTime, last?.endTime);
  const inSteps = deploy.reduce((sum, s) => sum + seconds(s.startTime, s.endTime), 0);
  out.set('queue', queue);
  out.set('between steps', total - queue - inSteps);
  out.set('total', total);
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function stepStats(boots: Boot[]): { name: string; p50: number; max: number }[] {
  const all = boots.map((b) => phases(b.final));
  return ['queue', ...DEPLOY_STEPS, 'between steps', 'total'].map((name) => {
    const values = all.map((m) => m.get(name) ?? Number.NaN).filter(Number.isFinite);
    return { name, p50: median(values), max: Math.max(...values) };
  });
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

const s = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;

function report(r: WaveResult, opts: Options): string {
  const stats = stepStats(r.boots);
  const total = stats.find((x) => x.name === 'total');
  const rows = [['step', 'p50 s', 'max s', 'p50 share']];
  for (const x of stats) {
    const share = x.name === 'total' || !total ? '' : `${((100 * x.p50) / total.p50).toFixed(0)}%`;
    rows.push([x.name, s(x.p50), s(x.max), share]);
  }
  const created = r.boots.map((b) => b.createdAtMs / 1000);
  const retries = r.boots.reduce((n, b) => n + b.createRetries, 0);
  const flowRetries = r.boots.reduce((n, b) => n + b.final.retries, 0);
  const res = r.resources;
  const kinds: ProcessKind[] = ['controller', 'agents', 'virtual nodes', 'BMC simulators'];
  const memory = kinds
    .map((k) => `${k} ${mib(res.peakByKind[k].bytes)} (${res.peakByKind[k].processes})`)
    .join(', ');
  return [
    '',
    `== ${r.size} node(s), ${opts.imageMiB} MiB image, ${opts.backend}: wall ${s(r.wallS)} s ` +
      `(first CreateInstance sent → last ACTIVE seen); lab set up in ${r.labSetupS.toFixed(1)} s`,
    ...table(rows),
    `CreateInstance answered within ${s(Math.max(...created))} s of the first call; ` +
      `${retries} refused (concurrent claims) and retried; ${flowRetries} power-cycle retries in flows`,
    `memory: machine in use ${mib(res.machineUsedBeforeBytes)} before, peak ${mib(res.machineUsedPeakBytes)} ` +
      `(+${mib(res.machineUsedPeakBytes - res.machineUsedBeforeBytes)}); private memory at peak, by kind ` +
      `(processes): ${memory}; one agent at most ${mib(res.agentPeakBytes)}`,
    `cpu: controller ${res.controllerCpuS.toFixed(1)} s (${((100 * res.controllerCpuS) / res.seconds).toFixed(0)}% ` +
      `of one core over the wave) + ${res.controllerChildrenCpuS.toFixed(1)} s in its reaped children ` +
      `(ipmitool, …); machine ${(100 * res.machineBusy).toFixed(0)}% busy over ${res.cores} cores; ` +
      `load average ${r.load[0].toFixed(1)} → ${r.load[1].toFixed(1)}`,
    `controller HTTP (what nodes fetch iPXE scripts from): ${describeProbe(r.http)}`,
    'p50/max: across instances, from the steps the controller recorded; queue: create → first step; ' +
      'between steps: total − queue − steps; total: create → last step ended; share: of total p50.',
  ].join('\n');
}

function summary(results: WaveResult[]): string {
  const first = results[0];
  const last = results.at(-1);
  if (!first || !last) throw new Error('no size was run');
  const slowest = stepStats(last.boots)
    .filter((x) => (DEPLOY_STEPS as readonly string[]).includes(x.name))
    .reduce((a, b) => (b.p50 > a.p50 ? b : a));
  const walls = results.map((r) => `${r.size}: ${r.wallS.toFixed(1)} s`).join(', ');
  return (
    `provision: ratio ${last.size}/${first.size} ${(last.wallS / first.wallS).toFixed(2)} ` +
    `(wall ${walls}; slowest step at ${last.size}: ${slowest.name} p50 ${slowest.p50.toFixed(1)} s)`
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
