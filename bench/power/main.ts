/**
 * `make bench-power`: BMC command latency per driver and a 100-node power-on wave, against
 * simulated BMCs (tools/lab: one ipmi_sim per BMC on loopback).
 *
 * - Latency: median and p95 of power status, on, off and set boot device through Ingot's
 *   PowerManager (queue, retries, confirmation by polling, boot device read back), per driver.
 * - Wave: 100 nodes powered on at once through PowerManager under its global concurrency limit,
 *   each confirmed by the BMC. Baseline: the same 100 raw `ipmitool chassis power on` commands
 *   at the same parallelism, without queue or confirmation (what a script would do). The first
 *   figure of the last line is Ingot's wave throughput ÷ the baseline's.
 *
 * Progress and the detailed table go to stderr; stdout gets one line of figures.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { resolveBmcOptions } from '../../controller/src/drivers/power/bmc-options.ts';
import { Secret } from '../../controller/src/drivers/power/power-driver.ts';
import { PowerManager } from '../../controller/src/drivers/power/power-manager.ts';
import { createPowerDrivers, type PowerNode } from '../../controller/src/drivers/power/registry.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import { type SimBmc, startBmcLab } from '../../tools/lab/bmc-lab.ts';

const run = promisify(execFile);
const DRIVERS = ['ipmitool', 'freeipmi'] as const;
const SAMPLES = Number(process.env.BENCH_POWER_SAMPLES ?? 30);
const WAVE = Number(process.env.BENCH_POWER_WAVE ?? 100);
/** Ingot's default global limit on BMC commands in flight. */
const LIMIT = 16;

const log = (line: string) => process.stderr.write(`bench-power: ${line}\n`);

function nodeOf(bmc: SimBmc, driver: string): PowerNode {
  return {
    name: `${driver}-${bmc.name}`,
    driver,
    bmc: {
      host: bmc.host,
      port: bmc.port,
      username: bmc.username,
      password: new Secret(bmc.password),
      options: resolveBmcOptions({ freeipmiWorkarounds: ['opensesspriv'] }),
    },
  };
}

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

/** Runs `tasks` with at most `limit` at once. */
async function pool(tasks: (() => Promise<unknown>)[], limit: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) await (tasks[next++] as () => Promise<unknown>)();
    }),
  );
}

const lab = await startBmcLab({ count: WAVE + DRIVERS.length });
const stopLab = () => lab.stop();
process.once('SIGTERM', () => void stopLab().then(() => process.exit(143)));
try {
  const power = new PowerManager({
    drivers: createPowerDrivers(),
    log: createLogger('warn'),
    maxConcurrent: LIMIT,
  });
  const latency: Record<string, Record<string, { p50: number; p95: number }>> = {};

  for (const [i, driver] of DRIVERS.entries()) {
    const node = nodeOf(lab.bmcs[WAVE + i] as SimBmc, driver);
    const samples: Record<string, number[]> = { status: [], on: [], off: [], bootdev: [] };
    await power.setPower(node, 'off');
    for (let s = 0; s < SAMPLES; s++) {
      samples.status?.push(await timed(() => power.powerState(node)));
      samples.on?.push(await timed(() => power.setPower(node, 'on')));
      samples.off?.push(await timed(() => power.setPower(node, 'off')));
      samples.bootdev?.push(
        await timed(() =>
          power.setBootDevice(node, s % 2 ? 'disk' : 'pxe', { persistent: false, uefi: false }),
        ),
      );
    }
    latency[driver] = Object.fromEntries(
      Object.entries(samples).map(([op, xs]) => [op, { p50: percentile(xs, 50), p95: percentile(xs, 95) }]),
    );
    for (const [op, { p50, p95 }] of Object.entries(latency[driver] ?? {})) {
      log(
        `${driver.padEnd(8)} ${op.padEnd(8)} p50 ${p50.toFixed(1)} ms  p95 ${p95.toFixed(1)} ms  (${SAMPLES} samples)`,
      );
    }
  }

  const waveBmcs = lab.bmcs.slice(0, WAVE);
  const allOff = async (driver: string) => {
    await Promise.all(waveBmcs.map((b) => power.setPower(nodeOf(b, driver), 'off')));
  };

  // Baseline: raw ipmitool, same parallelism, no queue, no confirmation.
  await allOff('ipmitool');
  const rawMs = await timed(() =>
    pool(
      waveBmcs.map(
        (b) => () =>
          run(
            'ipmitool',
            [
              '-I',
              'lanplus',
              '-H',
              b.host,
              '-p',
              String(b.port),
              '-U',
              b.username,
              '-E',
              '-C',
              '3',
              'chassis',
              'power',
              'on',
            ],
            { env: { ...process.env, IPMI_PASSWORD: b.password } },
          ),
      ),
      LIMIT,
    ),
  );
  const rawUp = waveBmcs.filter((b) => b.nodePid() !== undefined).length;
  log(`raw ipmitool wave: ${WAVE} power-on commands in ${rawMs.toFixed(0)} ms, ${rawUp} nodes up`);

  const waves: Record<string, { ms: number; up: number }> = {};
  for (const driver of DRIVERS) {
    await allOff(driver);
    const ms = await timed(() => Promise.all(waveBmcs.map((b) => power.setPower(nodeOf(b, driver), 'on'))));
    const up = waveBmcs.filter((b) => b.nodePid() !== undefined).length;
    waves[driver] = { ms, up };
    log(`Ingot ${driver} wave: ${WAVE} nodes on and confirmed in ${ms.toFixed(0)} ms, ${up} up`);
  }
  await allOff('freeipmi');

  const rate = (ms: number) => (WAVE / ms) * 1000;
  const ipmitoolWave = waves.ipmitool as { ms: number; up: number };
  const freeipmiWave = waves.freeipmi as { ms: number; up: number };
  const lat = (driver: string) =>
    ['status', 'on', 'off', 'bootdev']
      .map((op) => {
        const l = latency[driver]?.[op] as { p50: number; p95: number };
        return `${op} ${l.p50.toFixed(0)}/${l.p95.toFixed(0)}`;
      })
      .join(' ');
  process.stdout.write(
    `power: wave${WAVE} ingot(ipmitool, confirmed)/raw-ipmitool throughput ${(rate(ipmitoolWave.ms) / rate(rawMs)).toFixed(2)}x` +
      ` (ingot ${rate(ipmitoolWave.ms).toFixed(1)} nodes/s, raw ${rate(rawMs).toFixed(1)} nodes/s, freeipmi ${rate(freeipmiWave.ms).toFixed(1)} nodes/s, limit ${LIMIT}, up ${ipmitoolWave.up}+${freeipmiWave.up}/${WAVE * 2})` +
      ` | p50/p95 ms ipmitool ${lat('ipmitool')} | freeipmi ${lat('freeipmi')}\n`,
  );
} finally {
  await stopLab();
}
