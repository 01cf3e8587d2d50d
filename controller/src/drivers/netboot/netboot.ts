import type { BootEntry } from './boot-files.ts';

/**
 * Where a node is in netbooting: `pending` once its DHCP host entry and boot
 * files are in place, `leased` when it took its DHCP lease, `fetched` when it
 * downloaded its boot configuration (TFTP or HTTP). No entry: null.
 */
export type NetbootState = 'pending' | 'leased' | 'fetched';

/** How far each state is along the way; events never move a node backwards. */
export const NETBOOT_ORDER: Record<NetbootState, number> = { pending: 0, leased: 1, fetched: 2 };

/** The node a boot entry is for: enough to find and remove its files. */
export interface NodeMac {
  nodeId: string;
  /** Lower-case colon form. */
  mac: string;
}

/**
 * The netboot environment the provisioning flow uses: per-node DHCP host
 * entries and boot files (kernel arguments carry the controller's address and
 * the node's agent token), and what the node did with them.
 */
export interface Netboot {
  /** Writes the node's boot files, then its DHCP host entry; resolves once dnsmasq serves it. */
  prepare(entry: BootEntry): Promise<void>;
  /** Removes the node's host entry and boot files; resolves once dnsmasq no longer serves it. */
  remove(node: NodeMac): Promise<void>;
  /**
   * Resolves once the node fetched its boot configuration (TFTP or HTTP); rejects with
   * NetbootTimeoutError saying how far it got when `timeoutMs` passes first.
   */
  waitForBootFile(nodeId: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<void>;
}
