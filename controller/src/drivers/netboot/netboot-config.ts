import { z } from 'zod';

/**
 * The controller's netboot settings (config file key `netboot`).
 *
 * - `off` (default): no DHCP, no boot files; nodes boot however the site boots them.
 * - `managed`: the controller writes dnsmasq's configuration and runs dnsmasq itself,
 *   restarting it if it dies.
 * - `external`: the controller writes the host entries, boot files and a configuration
 *   snippet (`<dir>/dnsmasq.conf`) for an operator-run dnsmasq to include, and runs
 *   `reloadCommand` after a removal (dnsmasq needs a SIGHUP to drop a host entry).
 */
export const NetbootSettings = z
  .object({
    mode: z.enum(['off', 'managed', 'external']).default('off'),
    /**
     * Host entries, boot files, lease and event files. Every directory on the way must be
     * searchable by the user dnsmasq drops to (`nobody`): not under the 0700 data directory.
     * @default /var/lib/ingot-netboot
     */
    dir: z.string().default('/var/lib/ingot-netboot'),
    /** managed: the interface on the service network dnsmasq serves. */
    interface: z.string().default(''),
    /** managed: run dnsmasq inside this network namespace (labs, tests). */
    netns: z.string().default(''),
    /** The service network, e.g. `10.0.0.0/24`; nodes' addresses must be inside it. */
    subnet: z.string().default(''),
    /** DHCP lease time, in dnsmasq's syntax. @default 1h */
    leaseTime: z
      .string()
      .regex(/^(\d+[smhdw]?|infinite)$/)
      .default('1h'),
    /**
     * HTTP base URL nodes use to reach the controller (iPXE scripts, kernel, agent).
     * @default the controller's `httpAdvertiseUrl`
     */
    controllerUrl: z.union([z.url({ protocol: /^https?$/ }), z.literal('')]).default(''),
    /** gRPC address (`host:port`) the agent dials, put on the kernel command line. */
    controllerGrpc: z.string().default(''),
    /** @default <controllerUrl>/boot/vmlinuz */
    kernelUrl: z.string().default(''),
    /** @default <controllerUrl>/boot/initrd.img */
    initrdUrl: z.string().default(''),
    /** Kernel and initrd for PXE ROMs that boot pxelinux over TFTP, relative to `<dir>/tftp`. */
    tftpKernel: z.string().default('bootstrap/vmlinuz'),
    tftpInitrd: z.string().default('bootstrap/initrd.img'),
    /** What PXE ROMs without iPXE get: iPXE to chain-load (`undionly.kpxe`) or `pxelinux.0`. */
    pxeBootFile: z.string().default('undionly.kpxe'),
    /** Added to every node's kernel command line, e.g. `console=ttyS0`. */
    kernelArgs: z.string().default(''),
    /** @default dnsmasq (from $PATH) */
    dnsmasqBinary: z.string().default('dnsmasq'),
    /** The user dnsmasq drops to. @default nobody */
    user: z.string().default('nobody'),
    /** More dnsmasq lines, appended verbatim: e.g. what unknown MACs get (by default: nothing). */
    extraOptions: z.array(z.string()).default([]),
    /** external: run after a host entry was removed, e.g. `["systemctl", "reload", "dnsmasq"]`. */
    reloadCommand: z.array(z.string()).default([]),
    /** How long the controller waits for dnsmasq to confirm a change. @default 10000 ms */
    applyTimeoutMs: z.number().int().positive().default(10_000),
  })
  .strict();

export type NetbootConfig = z.infer<typeof NetbootSettings>;

/**
 * The gRPC address agents dial when `controllerGrpc` is not set: the host of the HTTP URL nodes
 * use, with the controller's bound gRPC port. Empty when there is no such URL.
 */
export function defaultControllerGrpc(
  netboot: NetbootConfig,
  httpAdvertiseUrl: string,
  grpcPort: number,
): string {
  if (netboot.controllerGrpc) return netboot.controllerGrpc;
  const base = netboot.controllerUrl || httpAdvertiseUrl;
  return base ? `${new URL(base).host.replace(/:\d+$/, '')}:${grpcPort}` : '';
}
