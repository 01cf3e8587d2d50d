import type * as pb from '../../../build/gen/ingot/v1/power.ts';
import { BootDevice as BootDeviceEnum, PowerAction } from '../../../build/gen/ingot/v1/power.ts';
import { recordExpectedPowerState, recordPowerState } from '../conductor/power-sync.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import type { BootDevice, BootDeviceSetting, PowerCommand } from '../drivers/power/power-driver.ts';
import { type PowerManager, targetStateOf } from '../drivers/power/power-manager.ts';
import { powerNodeOf } from '../drivers/power/registry.ts';
import { Node } from '../store/entities/node.ts';
import { findByRef } from '../store/resource-repository.ts';
import type { SecretBox } from '../store/secrets.ts';
import { ADMIN_ONLY } from './auth.ts';
import { powerStateToProto } from './inventory-mappers.ts';
import type { Method } from './rpc.ts';

const COMMANDS: Partial<Record<PowerAction, PowerCommand>> = {
  [PowerAction.POWER_ACTION_ON]: 'on',
  [PowerAction.POWER_ACTION_OFF]: 'off',
  [PowerAction.POWER_ACTION_SOFT_OFF]: 'soft-off',
  [PowerAction.POWER_ACTION_RESET]: 'reset',
  [PowerAction.POWER_ACTION_CYCLE]: 'cycle',
};

const DEVICES: Partial<Record<BootDeviceEnum, BootDevice>> = {
  [BootDeviceEnum.BOOT_DEVICE_PXE]: 'pxe',
  [BootDeviceEnum.BOOT_DEVICE_DISK]: 'disk',
};

const DEVICE_TO_PROTO: Record<BootDeviceSetting['device'], BootDeviceEnum> = {
  pxe: BootDeviceEnum.BOOT_DEVICE_PXE,
  disk: BootDeviceEnum.BOOT_DEVICE_DISK,
  none: BootDeviceEnum.BOOT_DEVICE_NONE,
  other: BootDeviceEnum.BOOT_DEVICE_OTHER,
};

/** Longest soft-off wait a caller may ask for. */
const MAX_SOFT_TIMEOUT_MS = 3_600_000;

/** PowerService: the thin edge over PowerManager; observations are recorded on the node. */
export function powerHandlers(deps: {
  secrets: SecretBox;
  power: PowerManager;
}): Record<string, Method<never, unknown>> {
  const { secrets, power } = deps;
  const bootReply = (node: Node, s: BootDeviceSetting): pb.BootDeviceSetting => ({
    node: node.id,
    device: DEVICE_TO_PROTO[s.device],
    persistent: s.persistent,
    uefi: s.uefi,
  });
  return {
    GetPowerState: {
      access: ADMIN_ONLY,
      handle: async (req: pb.GetPowerStateRequest, { em, signal }): Promise<pb.NodePower> => {
        const node = await findByRef(em, 'node', Node, req.node);
        const state = await power.powerState(powerNodeOf(node, secrets), { signal });
        const at = new Date();
        await recordPowerState(em, node.id, state, at);
        return {
          node: node.id,
          nodeName: node.name,
          powerState: powerStateToProto(state),
          observeTime: at,
          commandsSent: [],
          forcedOff: false,
        };
      },
    },
    SetPower: {
      access: ADMIN_ONLY,
      handle: async (req: pb.SetPowerRequest, { em, signal }): Promise<pb.NodePower> => {
        const command = COMMANDS[req.action];
        if (!command) {
          throw new InvalidArgumentError([
            { field: 'action', description: 'must be ON, OFF, SOFT_OFF, RESET or CYCLE' },
          ]);
        }
        if (req.softTimeoutMs > MAX_SOFT_TIMEOUT_MS) {
          throw new InvalidArgumentError([
            { field: 'soft_timeout_ms', description: `must be at most ${MAX_SOFT_TIMEOUT_MS}` },
          ]);
        }
        const node = await findByRef(em, 'node', Node, req.node);
        const target = powerNodeOf(node, secrets);
        await recordExpectedPowerState(em, node.id, targetStateOf(command));
        const change = await power.setPower(target, command, {
          signal,
          softOffTimeoutMs: req.softTimeoutMs || undefined,
        });
        const at = new Date();
        await recordPowerState(em, node.id, change.state, at);
        return {
          node: node.id,
          nodeName: node.name,
          powerState: powerStateToProto(change.state),
          observeTime: at,
          commandsSent: change.sent,
          forcedOff: change.forcedOff,
        };
      },
    },
    SetBootDevice: {
      access: ADMIN_ONLY,
      handle: async (req: pb.SetBootDeviceRequest, { em, signal }): Promise<pb.BootDeviceSetting> => {
        const device = DEVICES[req.device];
        if (!device)
          throw new InvalidArgumentError([{ field: 'device', description: 'must be PXE or DISK' }]);
        const node = await findByRef(em, 'node', Node, req.node);
        const setting = await power.setBootDevice(powerNodeOf(node, secrets), device, {
          persistent: req.persistent,
          uefi: req.uefi,
          signal,
        });
        return bootReply(node, setting);
      },
    },
    GetBootDevice: {
      access: ADMIN_ONLY,
      handle: async (req: pb.GetBootDeviceRequest, { em, signal }): Promise<pb.BootDeviceSetting> => {
        const node = await findByRef(em, 'node', Node, req.node);
        return bootReply(node, await power.bootDevice(powerNodeOf(node, secrets), { signal }));
      },
    },
  } as Record<string, Method<never, unknown>>;
}
