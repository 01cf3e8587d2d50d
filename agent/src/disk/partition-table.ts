import type { PartitionTableReport } from '../../../build/gen/ingot/v1/task.ts';

/** Reads `length` bytes at `offset` of the disk; rejects when they cannot be read. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** A partition starting further into the disk than this is suspicious (the disk's start may be elsewhere). @default 1 GiB */
const FAR_START_BYTES = 1 << 30;
/** What an MBR can address with 512-byte sectors. */
const MBR_LIMIT_BYTES = 2 ** 32 * 512;
/** The GPT entry array is read up to this size. @default 1 MiB (the standard array is 16 KiB) */
const GPT_ENTRIES_MAX_BYTES = 1 << 20;

const EFI_SYSTEM_GUID = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
const BIOS_BOOT_GUID = '21686148-6449-6e6f-744e-656564454649';
/** GPT attribute bit 2: legacy BIOS bootable. */
const LEGACY_BOOTABLE = 1n << 2n;
const MBR_PROTECTIVE = 0xee;
const MBR_EFI = 0xef;

interface Partition {
  index: number;
  startBytes: number;
  endBytes: number;
  boot: boolean;
}

/** A GPT GUID in its text form (the first three fields are little-endian). */
function guidText(b: Buffer): string {
  const hex = (buf: Buffer) => buf.toString('hex');
  const rev = (buf: Buffer) => hex(Buffer.from(buf).reverse());
  return `${rev(b.subarray(0, 4))}-${rev(b.subarray(4, 6))}-${rev(b.subarray(6, 8))}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`;
}

function isGptHeader(b: Buffer | undefined): b is Buffer {
  return b !== undefined && b.length >= 92 && b.toString('latin1', 0, 8) === 'EFI PART';
}

async function tryRead(read: ReadAt, offset: number, length: number): Promise<Buffer | undefined> {
  try {
    return await read(offset, length);
  } catch {
    return undefined;
  }
}

/**
 * Checks a disk's partition table before a capture, reading only its first
 * sectors, the GPT entry array and the backup GPT header:
 *
 * - MBR: the 0x55AA boot signature ends the first sector; its four primary
 *   entries (an extended partition counts as one, covering its logical ones).
 * - GPT: a protective MBR (type 0xEE), the primary header "EFI PART" at LBA 1,
 *   its entry array, and the backup header at the LBA the primary names.
 * - The end of the last partition (for `to_last_partition`).
 * - Warnings: no partition table; no partition a firmware boots from (active
 *   MBR entry, EFI system or BIOS boot partition, GPT legacy-bootable entry) —
 *   with a first partition that starts beyond 1 GiB, or one that runs past
 *   the end of the disk, the signs of the second disk of a split install
 *   (e.g. Windows put on a >2 TiB array split in two); an MBR on a disk
 *   larger than it can address; a missing backup GPT header.
 *
 * Never throws for what it finds: an unreadable sector becomes a warning.
 */
export async function checkPartitionTable(
  read: ReadAt,
  sizeBytes: number,
  sectorBytes: number,
): Promise<PartitionTableReport> {
  const report: PartitionTableReport = {
    scheme: 'none',
    mbrSignature: false,
    gptPrimary: false,
    gptBackup: false,
    partitionCount: 0,
    lastPartitionEndBytes: 0,
    hasBootPartition: false,
    warnings: [],
  };
  const mbr = await tryRead(read, 0, Math.min(sizeBytes, 512));
  if (!mbr) {
    report.warnings.push('the first sector cannot be read: no partition table could be checked');
    return report;
  }
  report.mbrSignature = mbr.length === 512 && mbr[510] === 0x55 && mbr[511] === 0xaa;
  if (!report.mbrSignature) {
    report.warnings.push(
      'no partition table (no 0x55AA boot signature in the first sector): a blank disk, or not a boot disk',
    );
    return report;
  }
  const mbrEntries: { type: number; active: boolean; startLba: number; sectors: number }[] = [];
  for (let i = 0; i < 4; i++) {
    const e = mbr.subarray(446 + 16 * i, 462 + 16 * i);
    const type = e[4] ?? 0;
    if (type === 0) continue;
    mbrEntries.push({
      type,
      active: e[0] === 0x80,
      startLba: e.readUInt32LE(8),
      sectors: e.readUInt32LE(12),
    });
  }
  let partitions: Partition[];
  if (mbrEntries.some((e) => e.type === MBR_PROTECTIVE)) {
    partitions = await readGpt(read, sizeBytes, sectorBytes, report);
  } else {
    report.scheme = 'mbr';
    // MBR sectors are 512 bytes on 512e disks; on 4Kn disks the table counts 4 KiB sectors.
    partitions = mbrEntries.map((e, i) => ({
      index: i + 1,
      startBytes: e.startLba * sectorBytes,
      endBytes: (e.startLba + e.sectors) * sectorBytes,
      boot: e.active || e.type === MBR_EFI,
    }));
    if (sizeBytes > MBR_LIMIT_BYTES) {
      report.warnings.push(
        `an MBR partition table on a disk larger than 2 TiB (${sizeBytes} bytes): it cannot address the rest of the disk; an installer may have split the system across disks`,
      );
    }
  }
  report.partitionCount = partitions.length;
  report.lastPartitionEndBytes = Math.max(0, ...partitions.map((p) => p.endBytes));
  report.hasBootPartition = partitions.some((p) => p.boot);
  if (partitions.length === 0) {
    report.warnings.push('the partition table lists no partitions');
    return report;
  }
  for (const p of partitions) {
    if (p.endBytes > sizeBytes) {
      report.warnings.push(
        `partition ${p.index} ends at byte ${p.endBytes}, past the end of the disk (${sizeBytes}): the table describes a larger disk (a truncated copy, or half of a split install)`,
      );
    }
  }
  const firstStart = Math.min(...partitions.map((p) => p.startBytes));
  if (!report.hasBootPartition) {
    report.warnings.push(
      `no bootable, EFI system or BIOS boot partition on this disk${firstStart > FAR_START_BYTES ? ` and its first partition starts ${firstStart} bytes in` : ''}: if the system was installed across two disks (e.g. a >2 TiB split install), its boot partition is on the other one`,
    );
  } else if (firstStart > FAR_START_BYTES) {
    report.warnings.push(
      `the first partition starts ${firstStart} bytes into the disk: the disk may continue another one (a split install)`,
    );
  }
  return report;
}

async function readGpt(
  read: ReadAt,
  sizeBytes: number,
  sectorBytes: number,
  report: PartitionTableReport,
): Promise<Partition[]> {
  report.scheme = 'gpt';
  const primary = await tryRead(read, sectorBytes, Math.min(sectorBytes, 512));
  report.gptPrimary = isGptHeader(primary);
  if (!isGptHeader(primary)) {
    report.warnings.push('a protective MBR but no GPT header ("EFI PART") at LBA 1: the GPT is damaged');
    return [];
  }
  const backupLba = Number(primary.readBigUInt64LE(32));
  const backupOffset = backupLba * sectorBytes;
  const backup = backupOffset + 512 <= sizeBytes ? await tryRead(read, backupOffset, 512) : undefined;
  report.gptBackup = isGptHeader(backup);
  if (!report.gptBackup) {
    report.warnings.push(
      backupOffset + sectorBytes > sizeBytes
        ? `the backup GPT header belongs at LBA ${backupLba}, past the end of the disk: the table was made for a larger disk`
        : `no backup GPT header at LBA ${backupLba}`,
    );
  } else if (backupOffset + sectorBytes !== sizeBytes) {
    report.warnings.push(
      `the backup GPT header is at LBA ${backupLba}, not at the disk's last sector: the disk grew since it was partitioned`,
    );
  }
  const entriesLba = Number(primary.readBigUInt64LE(72));
  const count = primary.readUInt32LE(80);
  const entryBytes = primary.readUInt32LE(84);
  if (entryBytes < 128 || count === 0) return [];
  const arrayBytes = Math.min(count * entryBytes, GPT_ENTRIES_MAX_BYTES);
  const array = await tryRead(read, entriesLba * sectorBytes, arrayBytes);
  if (!array) {
    report.warnings.push('the GPT partition entries cannot be read');
    return [];
  }
  const partitions: Partition[] = [];
  for (let i = 0; (i + 1) * entryBytes <= array.length; i++) {
    const e = array.subarray(i * entryBytes, (i + 1) * entryBytes);
    if (e.subarray(0, 16).every((b) => b === 0)) continue;
    const type = guidText(e.subarray(0, 16));
    const first = Number(e.readBigUInt64LE(32));
    const last = Number(e.readBigUInt64LE(40));
    const attributes = e.readBigUInt64LE(48);
    partitions.push({
      index: i + 1,
      startBytes: first * sectorBytes,
      endBytes: (last + 1) * sectorBytes,
      boot: type === EFI_SYSTEM_GUID || type === BIOS_BOOT_GUID || (attributes & LEGACY_BOOTABLE) !== 0n,
    });
  }
  return partitions;
}
