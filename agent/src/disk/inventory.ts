import { readdir, readFile, realpath } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import type { DiskInfo, HardwareInventory, NicInfo } from '../../../build/gen/ingot/v1/task.ts';
import { describeDevice } from './block-device.ts';

/** Block devices that are never a server's disks. */
const NOT_DISKS = /^(loop|ram|zram|dm-|md|sr|fd|nbd)/;

async function read(path: string): Promise<string> {
  return (await readFile(path, 'utf8').catch(() => '')).trim();
}

/** Whole disks under /sys/block (no loop, RAM, optical or device-mapper devices), as /dev paths. */
export async function wholeDisks(): Promise<string[]> {
  const names = await readdir('/sys/block').catch(() => [] as string[]);
  return names.filter((n) => !NOT_DISKS.test(n)).map((n) => `/dev/${n}`);
}

async function diskInfo(path: string): Promise<DiskInfo | undefined> {
  try {
    const { real, sizeBytes, logicalBlockBytes } = await describeDevice(path);
    const name = real.slice('/dev/'.length);
    const sys = `/sys/block/${name}`;
    const serial =
      (await read(`${sys}/device/serial`)) ||
      (await read(`${sys}/serial`)) ||
      (await read(`${sys}/device/wwid`));
    return {
      path,
      sizeBytes,
      model: await read(`${sys}/device/model`),
      serial,
      rotational: (await read(`${sys}/queue/rotational`)) === '1',
      logicalBlockBytes,
    };
  } catch {
    return undefined;
  }
}

async function nics(): Promise<NicInfo[]> {
  const names = await readdir('/sys/class/net').catch(() => [] as string[]);
  const found: NicInfo[] = [];
  for (const name of names.sort()) {
    if (name === 'lo') continue;
    const mac = (await read(`/sys/class/net/${name}/address`)).toLowerCase();
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) || mac === '00:00:00:00:00:00') continue;
    const speed = Number(await read(`/sys/class/net/${name}/speed`));
    found.push({
      name,
      mac,
      linkUp: (await read(`/sys/class/net/${name}/carrier`)) === '1',
      speedMbps: Number.isFinite(speed) && speed > 0 ? speed : 0,
    });
  }
  return found;
}

/**
 * The machine's hardware: CPUs, RAM, whole disks (plus `extraDisks`, the
 * devices given with --disk-allow, which may be loop devices) and NICs with
 * a MAC.
 */
export async function collectInventory(extraDisks: readonly string[] = []): Promise<HardwareInventory> {
  const cpuList = cpus();
  const paths = [...new Set([...(await wholeDisks()), ...extraDisks])];
  const disks = (await Promise.all(paths.map(diskInfo))).filter((d): d is DiskInfo => d !== undefined);
  return {
    cpuCount: cpuList.length,
    cpuModel: cpuList[0]?.model ?? '',
    ramBytes: totalmem(),
    disks,
    nics: await nics(),
  };
}

/** Resolved paths of the machine's whole disks, for the default disk policy. */
export async function wholeDiskPaths(): Promise<string[]> {
  return Promise.all((await wholeDisks()).map((p) => realpath(p).catch(() => p)));
}
