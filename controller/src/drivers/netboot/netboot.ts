/**
 * Where a node is in netbooting: `pending` once its DHCP host entry and boot
 * files are in place, `leased` when it took its DHCP lease, `fetched` when it
 * downloaded its boot configuration (TFTP or HTTP). No entry: null.
 */
export type NetbootState = 'pending' | 'leased' | 'fetched';

/** How far each state is along the way; events never move a node backwards. */
export const NETBOOT_ORDER: Record<NetbootState, number> = { pending: 0, leased: 1, fetched: 2 };
