import type { EntityManager } from '@mikro-orm/sql';
import type { PowerManager } from '../drivers/power/power-manager.ts';
import { powerNodeOf } from '../drivers/power/registry.ts';
import type { Instance } from '../store/entities/instance.ts';
import { Node } from '../store/entities/node.ts';
import type { SecretBox } from '../store/secrets.ts';
import { recordExpectedPowerState, recordPowerState } from './power-sync.ts';

/**
 * Reboots an instance's node from its disk: hard is a reset; soft asks the
 * OS to shut down (powering off hard if it does not), then powers on.
 */
export async function rebootNode(
  em: EntityManager,
  deps: { power: PowerManager; secrets: SecretBox },
  instance: Instance,
  hard: boolean,
  signal: AbortSignal,
): Promise<void> {
  const node = await em.findOneOrFail(Node, { id: instance.hostId });
  const target = powerNodeOf(node, deps.secrets);
  await recordExpectedPowerState(em, node.id, 'on');
  if (!hard) await deps.power.setPower(target, 'soft-off', { signal });
  const change = await deps.power.setPower(target, hard ? 'reset' : 'on', { signal });
  await recordPowerState(em, node.id, change.state, new Date());
}
