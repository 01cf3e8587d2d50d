import { child, descend, elements, t, textOf, type XmlElement, x } from './xml.ts';

/**
 * How a switch spells an access port's mode: ELS switches (EX2300/3400/4300
 * on Junos ≥ 13.2X50, QFX) use `interface-mode`; older EX use `port-mode`.
 * The wrong one is a `syntax error` with that element as `bad-element`.
 */
export type JunosSyntax = 'interface-mode' | 'port-mode';
export const JUNOS_SYNTAXES: readonly JunosSyntax[] = ['interface-mode', 'port-mode'];

/** An Ethernet-switching port's configuration as read back from the switch. */
export interface JunosPortConfig {
  /** `access`, `trunk`, or '' when the port has no ethernet-switching family. */
  mode: string;
  /** `vlan members` as configured: numbers or VLAN names. */
  members: string[];
}

/** The ports and VLANs of one `<configuration>`. */
export interface JunosPortView {
  ports: Map<string, JunosPortConfig>;
  /** VLAN name → VLAN id, from `vlans`. */
  vlanIds: Map<string, number>;
}

/** `<edit-config>` putting each port in access mode on exactly one VLAN (by numeric id). */
export function portEditConfig(
  changes: readonly { port: string; vlanId: number }[],
  syntax: JunosSyntax,
  unit: string,
): string {
  const interfaces = changes.map((c) =>
    x(
      'interface',
      {},
      x('name', {}, t(c.port)),
      x(
        'unit',
        {},
        x('name', {}, t(unit)),
        x(
          'family',
          {},
          x(
            'ethernet-switching',
            {},
            x(syntax, {}, 'access'),
            // replace: the port leaves every VLAN it was on, then joins this one.
            x('vlan', { operation: 'replace' }, x('members', {}, t(c.vlanId))),
          ),
        ),
      ),
    ),
  );
  return x(
    'edit-config',
    {},
    x('target', {}, x('candidate')),
    x('default-operation', {}, 'merge'),
    x('config', {}, x('configuration', {}, x('interfaces', {}, ...interfaces))),
  );
}

/** `<get-config>` of the given ports and of every VLAN, from `source` (`running` or `candidate`). */
export function portsGetConfig(ports: readonly string[], source: 'running' | 'candidate'): string {
  const interfaces = ports.map((p) => x('interface', {}, x('name', {}, t(p))));
  return x(
    'get-config',
    {},
    x('source', {}, x(source)),
    x('filter', { type: 'subtree' }, x('configuration', {}, x('interfaces', {}, ...interfaces), x('vlans'))),
  );
}

/** Reads ports (unit `unit`) and VLANs from a `<get-config>` reply. */
export function parsePortView(reply: XmlElement, unit: string): JunosPortView {
  const configuration = descend(reply, 'data', 'configuration') ?? child(reply, 'configuration');
  const ports = new Map<string, JunosPortConfig>();
  for (const iface of elements(child(configuration, 'interfaces'), 'interface')) {
    const name = textOf(child(iface, 'name'));
    const u = elements(iface, 'unit').find((e) => textOf(child(e, 'name')) === unit);
    const eth = descend(u, 'family', 'ethernet-switching');
    const mode = eth
      ? textOf(child(eth, 'interface-mode')) || textOf(child(eth, 'port-mode')) || 'access'
      : '';
    const members = elements(child(eth, 'vlan'), 'members').map((m) => textOf(m));
    ports.set(name, { mode, members });
  }
  const vlanIds = new Map<string, number>();
  for (const vlan of elements(child(configuration, 'vlans'), 'vlan')) {
    const id = Number(textOf(child(vlan, 'vlan-id')));
    if (Number.isInteger(id) && id > 0) vlanIds.set(textOf(child(vlan, 'name')), id);
  }
  return { ports, vlanIds };
}

/** The VLAN ids a port's members name (numbers as they are, names through `vlans`). */
export function memberVlanIds(
  port: JunosPortConfig | undefined,
  vlanIds: ReadonlyMap<string, number>,
): number[] {
  if (!port) return [];
  return port.members
    .map((m) => (/^\d+$/.test(m) ? Number(m) : (vlanIds.get(m) ?? (m === 'default' ? 1 : Number.NaN))))
    .filter((n) => !Number.isNaN(n));
}

/** True when the port is an access port on exactly `vlanId`. */
export function isOnVlan(
  port: JunosPortConfig | undefined,
  vlanIds: ReadonlyMap<string, number>,
  vlanId: number,
): boolean {
  const ids = memberVlanIds(port, vlanIds);
  return port?.mode === 'access' && ids.length === 1 && ids[0] === vlanId;
}

/** How a port reads, for messages: `access vlan 100`, `trunk vlans 100,200`, `unconfigured`. */
export function describePort(
  port: JunosPortConfig | undefined,
  vlanIds: ReadonlyMap<string, number>,
): string {
  if (!port?.mode) return 'unconfigured';
  const ids = memberVlanIds(port, vlanIds);
  return `${port.mode} vlan${ids.length === 1 ? '' : 's'} ${ids.join(',') || port.members.join(',') || 'none'}`;
}
