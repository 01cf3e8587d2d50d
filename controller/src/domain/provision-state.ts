/**
 * Node provision states, named after Ironic's where the meaning is the same
 * so Ironic and MAAS operators feel at home.
 */
export const PROVISION_STATES = [
  'enroll',
  'manageable',
  'available',
  'deploying',
  'wait call-back',
  'active',
  'deleting',
  'cleaning',
  'clean wait',
  'deploy failed',
  'clean failed',
  'error',
  'capturing',
  'capture failed',
] as const;

export type ProvisionState = (typeof PROVISION_STATES)[number];

/** States in which a node holds a tenant's instance or a flow is running on it. */
const BUSY: ReadonlySet<ProvisionState> = new Set([
  'deploying',
  'wait call-back',
  'active',
  'deleting',
  'cleaning',
  'clean wait',
  'capturing',
]);

/** A node may leave the inventory only when nothing runs on it and no instance uses it. */
export function isDeletable(state: ProvisionState, instanceId: string | null | undefined): boolean {
  return !BUSY.has(state) && !instanceId;
}
