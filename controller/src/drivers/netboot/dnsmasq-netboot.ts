import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, resolve } from 'node:path';
import { execa } from 'execa';
import { FailedPreconditionError, InvalidArgumentError } from '../../domain/errors.ts';
import { normalizeIp, normalizeMac } from '../../domain/formats.ts';
import type { HttpRoute } from '../../http/server.ts';
import type { Logger } from '../../log/logger.ts';
import { Node } from '../../store/entities/node.ts';
import type { Database } from '../../store/orm.ts';
import {
  AGENT_TOKEN,
  type BootEntry,
  CHAIN_SCRIPT,
  dnsmasqConf,
  eventScript,
  hexhyp,
  hostEntry,
  hostEntryPath,
  inSubnet,
  ipxePath,
  ipxeScript,
  type KernelParams,
  type NetbootPaths,
  netbootPaths,
  pxelinuxConfig,
  pxelinuxPath,
  writeFileAtomic,
} from './boot-files.ts';
import { type DhcpEvent, DhcpEventTail } from './dhcp-events.ts';
import { DnsmasqSupervisor } from './dnsmasq-supervisor.ts';
import type { Netboot, NetbootState, NodeMac } from './netboot.ts';
import type { NetbootConfig } from './netboot-config.ts';
import { NetbootError, NetbootTimeoutError } from './netboot-errors.ts';

export interface DnsmasqNetbootDeps {
  config: NetbootConfig;
  db: Database;
  log: Logger;
  /** HTTP base URL nodes reach the controller at, when the config names none. */
  controllerUrl: string;
  /** gRPC `host:port` agents dial, when the config names none. */
  controllerGrpc: string;
}

/**
 * Netboot with dnsmasq (managed: the controller runs it; external: an
 * operator does). One file per node in a `dhcp-hostsdir` (no tags: the
 * SIGHUP crash of dnsmasq 2.90), boot files named after the MAC, written
 * atomically and world-readable. A new entry is picked up by dnsmasq's
 * inotify and confirmed by its `read <file>` log line; a changed or removed
 * one needs a SIGHUP, confirmed by the reload marker's `read` line. Leases
 * live in dnsmasq's lease file and survive both. Lease and TFTP events come
 * back through the dhcp-script, iPXE fetches through the controller's HTTP
 * routes, and move the node's `netboot_state` forward.
 */
export class DnsmasqNetboot implements Netboot {
  readonly paths: NetbootPaths;
  readonly #config: NetbootConfig;
  readonly #db: Database;
  readonly #log: Logger;
  readonly #kernel: KernelParams;
  readonly #urls: { kernel: string; initrd: string; chain: string };
  readonly #supervisor: DnsmasqSupervisor | undefined;
  readonly #events: DhcpEventTail;
  readonly #changes = new EventEmitter();
  /** File changes and reloads, one at a time: a reload confirms exactly the changes before it. */
  #serial: Promise<unknown> = Promise.resolve();

  constructor(deps: DnsmasqNetbootDeps) {
    const c = deps.config;
    this.#config = c;
    this.#db = deps.db;
    this.#log = deps.log.child({ component: 'netboot' });
    this.paths = netbootPaths(resolve(c.dir));
    const base = (c.controllerUrl || deps.controllerUrl).replace(/\/+$/, '');
    this.#kernel = {
      controllerGrpc: c.controllerGrpc || deps.controllerGrpc,
      controllerUrl: base,
      extra: c.kernelArgs,
    };
    this.#urls = {
      kernel: c.kernelUrl || `${base}/boot/vmlinuz`,
      initrd: c.initrdUrl || `${base}/boot/initrd.img`,
      chain: `${base}/netboot/boot.ipxe`,
    };
    this.#supervisor =
      c.mode === 'managed'
        ? new DnsmasqSupervisor({
            binary: c.dnsmasqBinary,
            confFile: this.paths.confFile,
            netns: c.netns,
            log: this.#log,
            timeoutMs: c.applyTimeoutMs,
          })
        : undefined;
    this.#events = new DhcpEventTail(this.paths.eventLog, (e) => this.#onEvent(e));
    this.#changes.setMaxListeners(0);
  }

  /** The running dnsmasq's PID (managed mode). */
  get dnsmasqPid(): number | undefined {
    return this.#supervisor?.pid;
  }

  get supervisor(): DnsmasqSupervisor | undefined {
    return this.#supervisor;
  }

  /** Writes the configuration and fixed files, starts dnsmasq (managed) and follows its events. */
  async start(): Promise<void> {
    const c = this.#config;
    const p = this.paths;
    const problems: string[] = [];
    if (c.mode === 'managed' && !c.interface) problems.push('netboot.interface is required in managed mode');
    if (!/^\d+\.\d+\.\d+\.\d+\/\d{1,2}$/.test(c.subnet))
      problems.push('netboot.subnet must be like 10.0.0.0/24');
    if (!this.#kernel.controllerUrl) problems.push('netboot.controllerUrl (or httpAdvertiseUrl) is required');
    if (!this.#kernel.controllerGrpc) problems.push('netboot.controllerGrpc is required');
    if (problems.length > 0) throw new NetbootError('NETBOOT_MISCONFIGURED', problems.join('; '));
    for (const d of [
      p.dir,
      p.hostsDir,
      p.tftpRoot,
      dirname(pxelinuxPath(p, '00:00:00:00:00:00')),
      dirname(ipxePath(p, '00:00:00:00:00:00')),
    ]) {
      mkdirSync(d, { recursive: true, mode: 0o755 });
      chmodSync(d, 0o755);
    }
    checkReachableByOthers(p.dir);
    writeFileAtomic(p.reloadMarker, '# Ingot: empty on purpose; dnsmasq logs reading it on every reload.\n');
    writeFileAtomic(p.eventScript, eventScript(p.eventLog), 0o755);
    chmodSync(p.eventScript, 0o755);
    writeFileAtomic(`${p.tftpRoot}/boot.ipxe`, CHAIN_SCRIPT);
    writeFileAtomic(
      p.confFile,
      dnsmasqConf({
        mode: c.mode === 'managed' ? 'managed' : 'external',
        paths: p,
        interface: c.interface,
        subnet: c.subnet,
        leaseTime: c.leaseTime,
        pxeBootFile: c.pxeBootFile,
        chainUrl: this.#urls.chain,
        user: c.user,
        extraOptions: c.extraOptions,
      }),
    );
    this.#events.start();
    try {
      await this.#supervisor?.start();
    } catch (err) {
      this.#events.stop();
      throw err;
    }
    this.#log.info({ mode: c.mode, dir: p.dir, pid: this.dnsmasqPid }, 'netboot ready');
  }

  async stop(): Promise<void> {
    this.#events.stop();
    await this.#supervisor?.stop();
  }

  prepare(entry: BootEntry): Promise<void> {
    const mac = normalizeMac(entry.mac);
    const ip = normalizeIp(entry.ip);
    const violations = [];
    if (!mac) violations.push({ field: 'mac', description: 'must be a unicast MAC address' });
    if (!ip || !inSubnet(ip, this.#config.subnet)) {
      violations.push({
        field: 'ip',
        description: `must be an IPv4 address in the service network ${this.#config.subnet}`,
      });
    }
    if (!AGENT_TOKEN.test(entry.agentToken)) {
      violations.push({
        field: 'agent_token',
        description: 'must be 8-512 URL-safe characters (it goes on a kernel command line)',
      });
    }
    if (violations.length > 0) return Promise.reject(new InvalidArgumentError(violations));
    const e: BootEntry = { ...entry, mac: mac as string, ip: ip as string };
    return this.#exclusive(async () => {
      const p = this.paths;
      // Boot files first: once DHCP answers, the node fetches them at once.
      writeFileAtomic(ipxePath(p, e.mac), ipxeScript(e, this.#kernel, this.#urls));
      writeFileAtomic(
        pxelinuxPath(p, e.mac),
        pxelinuxConfig(e, this.#kernel, { kernel: this.#config.tftpKernel, initrd: this.#config.tftpInitrd }),
      );
      const path = hostEntryPath(p, e.mac);
      const content = hostEntry(e);
      const previous = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
      if (previous !== content) {
        if (previous === undefined && this.#supervisor) {
          // A new file: dnsmasq's inotify reads it; its log line says when.
          const read = this.#supervisor.waitForLine(
            (l) => l.endsWith(`read ${path}`),
            `host entry of ${e.nodeName}`,
          );
          writeFileAtomic(path, content);
          await read;
        } else {
          // A changed file would be added next to the old entry by inotify: reload instead.
          writeFileAtomic(path, content);
          await this.#reload();
        }
      }
      await this.#db
        .fork()
        .nativeUpdate(Node, { id: e.nodeId }, { netbootState: 'pending', netbootTime: new Date() });
      this.#log.info({ node: e.nodeName, mac: e.mac, ip: e.ip }, 'netboot entry prepared');
      this.#changes.emit(e.nodeId);
    });
  }

  remove(node: NodeMac): Promise<void> {
    const mac = normalizeMac(node.mac);
    if (!mac)
      return Promise.reject(
        new InvalidArgumentError([{ field: 'mac', description: 'must be a MAC address' }]),
      );
    return this.#exclusive(async () => {
      const p = this.paths;
      const existed = removeIfExists(hostEntryPath(p, mac));
      removeIfExists(ipxePath(p, mac));
      removeIfExists(pxelinuxPath(p, mac));
      if (existed) await this.#reload();
      await this.#db
        .fork()
        .nativeUpdate(Node, { id: node.nodeId }, { netbootState: null, netbootTime: new Date() });
      this.#log.info({ nodeId: node.nodeId, mac }, 'netboot entry removed');
      this.#changes.emit(node.nodeId);
    });
  }

  async waitForBootFile(nodeId: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<void> {
    const started = Date.now();
    for (;;) {
      const node = await this.#db.fork().findOne(Node, { id: nodeId }, { fields: ['name', 'netbootState'] });
      if (!node) throw new FailedPreconditionError('NODE_GONE', `node ${nodeId} no longer exists`);
      const state = node.netbootState ?? null;
      if (state === 'fetched') return;
      if (state === null) {
        throw new FailedPreconditionError('NETBOOT_NOT_PREPARED', `node ${node.name} has no netboot entry`, {
          node: node.name,
        });
      }
      const left = opts.timeoutMs - (Date.now() - started);
      if (left <= 0) throw timeoutFor(node.name, state, opts.timeoutMs);
      opts.signal?.throwIfAborted();
      // Woken by an event for this node; the short poll covers another controller's events.
      await new Promise<void>((resolveWait) => {
        const done = () => {
          clearTimeout(timer);
          this.#changes.off(nodeId, done);
          opts.signal?.removeEventListener('abort', done);
          resolveWait();
        };
        const timer = setTimeout(done, Math.min(left, 1_000));
        this.#changes.on(nodeId, done);
        opts.signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** `GET /netboot/boot.ipxe` (the chain script) and `GET /netboot/ipxe/<mac>.ipxe` (a node's script). */
  routes(): HttpRoute[] {
    const text = (res: ServerResponse, code: number, body: string) =>
      res
        .writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
        .end(body);
    return [
      {
        path: /^\/netboot\/boot\.ipxe$/,
        methods: ['GET', 'HEAD'],
        handle: async (_req: IncomingMessage, res: ServerResponse) => {
          text(res, 200, CHAIN_SCRIPT);
        },
      },
      {
        path: /^\/netboot\/ipxe\/([0-9a-f]{2}(?:-[0-9a-f]{2}){5})\.ipxe$/,
        methods: ['GET', 'HEAD'],
        handle: async (req: IncomingMessage, res: ServerResponse, [hyphenated = '']: string[]) => {
          const mac = hyphenated.replace(/-/g, ':');
          let script: string;
          try {
            script = readFileSync(ipxePath(this.paths, mac), 'utf8');
          } catch {
            // Unknown MACs get nothing.
            text(res, 404, 'no boot configuration for this MAC\n');
            return;
          }
          text(res, 200, script);
          if (req.method === 'GET')
            await this.#advance(mac, 'fetched', `http ${req.socket.remoteAddress ?? ''}`);
        },
      },
    ];
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn, fn);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  async #reload(): Promise<void> {
    if (this.#supervisor) {
      await this.#supervisor.reload(this.paths.reloadMarker);
      return;
    }
    const [bin, ...args] = this.#config.reloadCommand;
    if (!bin) {
      this.#log.warn(
        'netboot entry removed or changed; the external dnsmasq needs a SIGHUP (set netboot.reloadCommand)',
      );
      return;
    }
    const result = await execa(bin, args, {
      reject: false,
      timeout: this.#config.applyTimeoutMs,
      stdin: 'ignore',
    });
    if (result.exitCode !== 0) {
      throw new NetbootError(
        'NETBOOT_RELOAD_FAILED',
        `netboot.reloadCommand failed (${result.exitCode ?? 'killed'}): ${String(result.stderr).trim().slice(0, 200)}`,
      );
    }
  }

  #onEvent(e: DhcpEvent): void {
    if (e.kind === 'lease') {
      if (e.action !== 'del') void this.#advance(e.mac, 'leased', `dhcp ${e.action} ${e.ip}`);
      return;
    }
    const match = /(?:pxelinux\.cfg\/01-|ipxe\/)([0-9a-f]{2}(?:-[0-9a-f]{2}){5})(?:\.ipxe)?$/.exec(e.file);
    if (match?.[1]) void this.#advance(match[1].replace(/-/g, ':'), 'fetched', `tftp ${e.ip}`);
  }

  /** Moves a node forward (never back) by MAC; a conditional update, so any controller may apply it. */
  async #advance(mac: string, to: NetbootState, how: string): Promise<void> {
    const from: NetbootState[] = to === 'leased' ? ['pending'] : ['pending', 'leased'];
    try {
      const em = this.#db.fork();
      const n = await em.nativeUpdate(
        Node,
        { mac, netbootState: { $in: from } },
        { netbootState: to, netbootTime: new Date() },
      );
      if (n === 0) return;
      const node = await em.findOne(Node, { mac }, { fields: ['id', 'name'] });
      this.#log.info(
        { node: node?.name, mac, how },
        to === 'leased' ? 'node took its DHCP lease' : 'node fetched its boot file',
      );
      if (node) this.#changes.emit(node.id);
    } catch (err) {
      this.#log.error({ err, mac }, 'could not record a netboot event');
    }
  }
}

function timeoutFor(node: string, state: NetbootState, waitedMs: number): NetbootTimeoutError {
  return state === 'pending'
    ? new NetbootTimeoutError({
        node,
        reached: 'did not ask for a DHCP lease',
        waitedMs,
        hint: 'check that it boots from the network (boot device, power) and that its switch port is on the service network',
      })
    : new NetbootTimeoutError({
        node,
        reached: 'took its DHCP lease but did not fetch its boot file',
        waitedMs,
        hint: 'check TFTP (UDP 69) and the controller HTTP URL from the service network, and the PXE boot file',
      });
}

function removeIfExists(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** dnsmasq reads as `nobody`: every directory on the way must let others through (an entry in a 0700 directory is silently ignored). */
function checkReachableByOthers(dir: string): void {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) {
      throw new NetbootError(
        'NETBOOT_DIR_NOT_READABLE',
        `dnsmasq drops to an unprivileged user and cannot reach ${dir}: ${d} is not searchable by others (chmod o+x ${d}, or choose another netboot.dir)`,
        { dir: d },
      );
    }
    if (dirname(d) === d) return;
  }
}

/** The hyphenated MAC form used in file names, for callers that build URLs. */
export { hexhyp };
