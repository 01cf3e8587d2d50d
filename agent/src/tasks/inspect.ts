import { collectInventory } from '../disk/inventory.ts';
import type { TaskContext, TaskOutcomeValue } from './context.ts';

/** Reports the node's hardware: CPUs, RAM, disks (with the allowed ones) and NICs. */
export async function inspect(ctx: TaskContext): Promise<TaskOutcomeValue> {
  ctx.progress.update('inspecting');
  return { inventory: await collectInventory(ctx.disks.allow) };
}
