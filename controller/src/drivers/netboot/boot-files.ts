import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * What the controller writes for dnsmasq and for booting nodes, as text; and
 * the one way it writes files. Host entries carry no `set:` tags: dnsmasq
 * 2.90 crashes on SIGHUP when a host entry with a tag was served, and
 * removing an entry needs a SIGHUP. Per-node behaviour comes from files
 * named after the MAC instead (pxelinux.cfg/01-<mac>, ipxe/<mac>.ipxe).
 */

/** `52:54:00:aa:bb:01` → `52-54-00-aa-bb-01` (pxelinux's and iPXE's `${mac:hexhyp}` spelling). */
export const hexhyp = (mac: string): string => mac.toLowerCase().replace(/:/g, '-');

/** A node's boot entry as the netboot layer gets it. */
export interface BootEntry {
  nodeId: string;
  /** For comments and the DHCP host name. */
  nodeName: string;
  /** Lower-case colon form. */
  mac: string;
  /** The address the node gets on the service network. */
  ip: string;
  /** The node's agent token; goes on the kernel command line, so it is readable on the service network. */
  agentToken: string;
}

/** Where each file lives under the netboot directory. */
export interface NetbootPaths {
  dir: string;
  hostsDir: string;
  tftpRoot: string;
  confFile: string;
  leaseFile: string;
  eventScript: string;
  eventLog: string;
  /** A host-entry file with no entries: dnsmasq logs `read <it>` on every reload, which confirms the reload. */
  reloadMarker: string;
}

export function netbootPaths(dir: string): NetbootPaths {
  const hostsDir = join(dir, 'hosts');
  return {
    dir,
    hostsDir,
    tftpRoot: join(dir, 'tftp'),
    confFile: join(dir, 'dnsmasq.conf'),
    leaseFile: join(dir, 'dnsmasq.leases'),
    eventScript: join(dir, 'dhcp-event.sh'),
    eventLog: join(dir, 'events.log'),
    reloadMarker: join(hostsDir, '0-ingot-reload-marker'),
  };
}

export const hostEntryPath = (p: NetbootPaths, mac: string): string => join(p.hostsDir, hexhyp(mac));
export const pxelinuxPath = (p: NetbootPaths, mac: string): string =>
  join(p.tftpRoot, 'pxelinux.cfg', `01-${hexhyp(mac)}`);
export const ipxePath = (p: NetbootPaths, mac: string): string =>
  join(p.tftpRoot, 'ipxe', `${hexhyp(mac)}.ipxe`);

/** A DHCP host name from a node name: DNS label characters only, at most 63. */
export function dhcpHostName(nodeName: string): string {
  const label = nodeName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return label || 'node';
}

/** `MAC,IP,NAME` — no tags (see the module comment). */
export function hostEntry(e: BootEntry): string {
  return `${e.mac},${e.ip},${dhcpHostName(e.nodeName)}\n`;
}

/** What every node's kernel command line carries. */
export interface KernelParams {
  /** gRPC `host:port` the agent dials. */
  controllerGrpc: string;
  /** HTTP base URL (agent download, images). */
  controllerUrl: string;
  extra: string;
}

/** Agent tokens go on a kernel command line: no spaces, quotes or shell characters. */
export const AGENT_TOKEN = /^[A-Za-z0-9._~+/=-]{8,512}$/;

/**
 * The bootstrap kernel's command line. `quiet` first: the token is on it, and without `quiet` the
 * kernel prints its whole command line to every console, a serial console logged by a BMC included.
 */
export function kernelArgs(e: BootEntry, k: KernelParams): string {
  return [
    'quiet',
    `ingot.controller=${k.controllerGrpc}`,
    `ingot.http=${k.controllerUrl}`,
    `ingot.node=${e.nodeId}`,
    `ingot.token=${e.agentToken}`,
    k.extra.trim(),
  ]
    .filter(Boolean)
    .join(' ');
}

/** The per-node iPXE script, served over HTTP (and TFTP) as `ipxe/<mac>.ipxe`. */
export function ipxeScript(e: BootEntry, k: KernelParams, urls: { kernel: string; initrd: string }): string {
  return [
    '#!ipxe',
    `# Ingot boot configuration for node ${e.nodeName} (${e.mac}), written by the controller.`,
    `kernel ${urls.kernel} initrd=initrd.img ${kernelArgs(e, k)}`,
    `initrd --name initrd.img ${urls.initrd}`,
    'boot',
    '',
  ].join('\n');
}

/** The per-node pxelinux configuration, for PXE ROMs that boot pxelinux.0 over TFTP. */
export function pxelinuxConfig(
  e: BootEntry,
  k: KernelParams,
  tftp: { kernel: string; initrd: string },
): string {
  return [
    `# Ingot boot configuration for node ${e.nodeName} (${e.mac}), written by the controller.`,
    'DEFAULT ingot',
    'LABEL ingot',
    `  KERNEL ${tftp.kernel}`,
    `  INITRD ${tftp.initrd}`,
    `  APPEND ${kernelArgs(e, k)}`,
    '',
  ].join('\n');
}

/**
 * What every iPXE client gets first: a chain to its own script, by MAC, relative to
 * where this one came from. Unknown MACs find no script and boot nothing.
 */
export const CHAIN_SCRIPT = [
  '#!ipxe',
  '# Ingot: each node fetches its own boot configuration, named after its MAC.',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an iPXE setting, expanded by iPXE
  'chain ipxe/${mac:hexhyp}.ipxe || goto none',
  ':none',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an iPXE setting, expanded by iPXE
  'echo Ingot has no boot configuration for ${mac}; it is not being provisioned.',
  'exit 1',
  '',
].join('\n');

/** The script dnsmasq runs (as root) for lease changes and TFTP transfers: it appends one line. */
export function eventScript(eventLog: string): string {
  const quoted = `'${eventLog.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    '# Written by the Ingot controller. dnsmasq runs this for every DHCP lease change',
    '# ("add|old|del MAC IP [NAME]") and TFTP transfer ("tftp BYTES IP FILE"); the',
    '# controller reads the lines to learn that a node took its lease and fetched its boot file.',
    `printf '%s %s %s %s\\n' "$1" "$2" "$3" "$4" >> ${quoted}`,
    '',
  ].join('\n');
}

export interface DnsmasqConfOptions {
  mode: 'managed' | 'external';
  paths: NetbootPaths;
  interface: string;
  /** `10.0.0.0/24` */
  subnet: string;
  leaseTime: string;
  pxeBootFile: string;
  /** URL of the chain script for iPXE clients. */
  chainUrl: string;
  user: string;
  extraOptions: readonly string[];
}

/** dnsmasq's configuration: the whole file (managed) or a snippet to include (external). */
export function dnsmasqConf(o: DnsmasqConfOptions): string {
  const [network = '', bits = '24'] = o.subnet.split('/');
  const lines = [
    `# Written by the Ingot controller (${o.mode} netboot); rewritten at every start: change the`,
    "# controller's netboot settings instead of this file.",
  ];
  if (o.mode === 'managed') {
    lines.push(
      'port=0',
      'no-resolv',
      'no-hosts',
      `interface=${o.interface}`,
      'bind-interfaces',
      `user=${o.user}`,
      `dhcp-leasefile=${o.paths.leaseFile}`,
    );
  } else {
    lines.push(`# Include this file from your dnsmasq configuration: conf-file=${o.paths.confFile}`);
  }
  lines.push(
    // Fixed addresses only: every node Ingot boots has a host entry; nobody else gets an address.
    `dhcp-range=${network},static,${prefixToMask(Number(bits))},${o.leaseTime}`,
    `dhcp-hostsdir=${o.paths.hostsDir}`,
    'dhcp-ignore=tag:!known',
    `dhcp-script=${o.paths.eventScript}`,
    'dhcp-match=set:ipxe,175',
    'dhcp-userclass=set:ipxe,iPXE',
    `dhcp-boot=tag:!ipxe,${o.pxeBootFile}`,
    `dhcp-boot=tag:ipxe,${o.chainUrl}`,
    // Not a router and not a DNS server: the service network is for booting only.
    'dhcp-option=3',
    'dhcp-option=6',
    // Without it every new address waits ≈ 3 s for a ping that nobody answers.
    'no-ping',
    'enable-tftp',
    `tftp-root=${o.paths.tftpRoot}`,
    ...o.extraOptions,
    '',
  );
  return lines.join('\n');
}

function prefixToMask(bits: number): string {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (mask >>> shift) & 0xff).join('.');
}

/** True when `ip` (IPv4) is inside `cidr`. */
export function inSubnet(ip: string, cidr: string): boolean {
  const [network = '', bitsText = '32'] = cidr.split('/');
  const toInt = (a: string) => a.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
  const bits = Number(bitsText);
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip) || !/^\d+\.\d+\.\d+\.\d+$/.test(network)) return false;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (toInt(ip) & mask) === (toInt(network) & mask);
}

/**
 * Writes a file atomically: a hidden temporary file in the same directory (dnsmasq's inotify
 * ignores dot files), fsynced, renamed over the target. Readers (dnsmasq, TFTP clients) see the
 * old or the new content, never half of it. World-readable: dnsmasq reads as `nobody`.
 */
export function writeFileAtomic(path: string, content: string, mode = 0o644): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}
