import { type FieldSpec, text } from './fields.ts';
import { isName, NAME_HINT } from './formats.ts';

/** The service network nodes PXE-boot on, or a project's network. */
export const NETWORK_KINDS = ['service', 'project'] as const;

/** 802.1Q VLAN ids usable for access ports (0 and 4095 are reserved). */
export const VLAN_MIN = 1;
export const VLAN_MAX = 4094;

export const BRIDGE_HINT = 'must be a Linux interface name: 1-15 letters, digits, "_", "-" or "."';

/** A Linux interface name (IFNAMSIZ 16 with the NUL): what `ip link` accepts. */
export function isInterfaceName(s: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(s) && s !== '.' && s !== '..';
}

const name = (v: unknown): unknown => {
  const s = typeof v === 'string' ? v.trim() : '';
  return s === '' || isName(s) ? s : { invalid: NAME_HINT };
};

const vlanId = (v: unknown): unknown => {
  if (v === 0 || v === undefined) return 0;
  return typeof v === 'number' && Number.isInteger(v) && v >= VLAN_MIN && v <= VLAN_MAX
    ? v
    : { invalid: `must be a VLAN id from ${VLAN_MIN} to ${VLAN_MAX}` };
};

const bridge = (v: unknown): unknown => {
  const s = typeof v === 'string' ? v.trim() : '';
  return s === '' || isInterfaceName(s) ? s : { invalid: BRIDGE_HINT };
};

/** The Network message's fields; `kind` arrives as the proto enum and is mapped by the API edge. */
export const NETWORK_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', required: true, parse: name },
  { name: 'kind', key: 'kind', updatable: false, parse: (v) => v },
  { name: 'project_id', key: 'projectId', updatable: false, parse: text(64) },
  { name: 'vlan_id', key: 'vlanId', required: true, updatable: false, parse: vlanId },
  { name: 'bridge', key: 'bridge', updatable: false, parse: bridge },
  { name: 'description', key: 'description', parse: text(1024) },
];
