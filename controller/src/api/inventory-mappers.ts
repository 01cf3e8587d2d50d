import type {
  Aggregate as AggregateMessage,
  Flavor as FlavorMessage,
  Host as HostMessage,
  Node as NodeMessage,
  Project as ProjectMessage,
  Switch as SwitchMessage,
} from '../../../build/gen/ingot/v1/inventory.ts';
import {
  NetbootState as NetbootStateEnum,
  PowerState as PowerStateEnum,
  ProvisionState as ProvisionStateEnum,
} from '../../../build/gen/ingot/v1/inventory.ts';
import type { ProvisionState } from '../domain/provision-state.ts';
import type { NetbootState } from '../drivers/netboot/netboot.ts';
import { bmcOptionsToInput } from '../drivers/power/bmc-options.ts';
import type { PowerState } from '../drivers/power/power-driver.ts';
import type { Aggregate } from '../store/entities/aggregate.ts';
import type { Flavor } from '../store/entities/flavor.ts';
import type { Host } from '../store/entities/host.ts';
import type { Node } from '../store/entities/node.ts';
import type { Project } from '../store/entities/project.ts';
import type { Switch } from '../store/entities/switch.ts';

/** Entity → API message. Secrets only ever leave as "is one stored". */

/** `wait call-back` ⇄ PROVISION_STATE_WAIT_CALL_BACK. */
export function provisionStateToProto(state: ProvisionState): ProvisionStateEnum {
  const key =
    `PROVISION_STATE_${state.toUpperCase().replace(/[ -]/g, '_')}` as keyof typeof ProvisionStateEnum;
  return ProvisionStateEnum[key] ?? ProvisionStateEnum.PROVISION_STATE_UNSPECIFIED;
}

export function provisionStateFromProto(value: ProvisionStateEnum): ProvisionState | undefined {
  const key = Object.entries(ProvisionStateEnum).find(([, v]) => v === value)?.[0];
  if (!key || value === ProvisionStateEnum.PROVISION_STATE_UNSPECIFIED) return undefined;
  const words = key.slice('PROVISION_STATE_'.length).toLowerCase().split('_');
  const state = words.join(' ').replace('call back', 'call-back');
  return state as ProvisionState;
}

export function switchToProto(s: Switch): SwitchMessage {
  return {
    id: s.id,
    name: s.name,
    address: s.address,
    username: s.username,
    password: '',
    hasPassword: s.passwordSealed !== null,
    driver: s.driver,
    description: s.description,
    hostKeyFingerprint: s.hostKeyFingerprint,
    createTime: s.createdAt,
    updateTime: s.updatedAt,
    sshPrivateKey: '',
    hasSshPrivateKey: s.sshPrivateKeySealed !== null,
    driverOptions: s.driverOptions ?? {},
  };
}

export function nodeToProto(n: Node): NodeMessage {
  return {
    id: n.id,
    name: n.name,
    ip: n.ip,
    mac: n.mac,
    cpus: n.cpus,
    ramMb: n.ramMb,
    diskGb: n.diskGb,
    bmcAddress: n.bmcAddress,
    bmcUsername: n.bmcUsername,
    bmcPassword: '',
    hasBmcPassword: n.bmcPasswordSealed !== null,
    powerDriver: n.powerDriver,
    switchId: n.switchId ?? '',
    switchPort: n.switchPort,
    provisionState: provisionStateToProto(n.provisionState),
    maintenance: n.maintenance,
    maintenanceReason: n.maintenanceReason,
    lastError: n.lastError,
    instanceId: n.instanceId ?? '',
    createTime: n.createdAt,
    updateTime: n.updatedAt,
    powerState: powerStateToProto(n.powerState),
    powerStateTime: n.powerStateTime ?? undefined,
    expectedPowerState: powerStateToProto(n.expectedPowerState),
    powerDriftTime: n.powerDriftTime ?? undefined,
    powerError: n.powerError ?? '',
    bmcOptions: bmcOptionsToInput(n.bmcOptions),
    networkId: n.networkId ?? '',
    targetNetworkId: n.targetNetworkId ?? '',
    networkError: n.networkError ?? '',
    networkTime: n.networkTime ?? undefined,
    netbootState: netbootStateToProto(n.netbootState),
    rootDisk: n.rootDisk,
    netbootTime: n.netbootTime ?? undefined,
  };
}

/** `on` ⇄ POWER_STATE_ON; unknown (null) is UNSPECIFIED. */
export function powerStateToProto(state: PowerState | null | undefined): PowerStateEnum {
  if (state === 'on') return PowerStateEnum.POWER_STATE_ON;
  if (state === 'off') return PowerStateEnum.POWER_STATE_OFF;
  return PowerStateEnum.POWER_STATE_UNSPECIFIED;
}

export function projectToProto(p: Project): ProjectMessage {
  return {
    id: p.id,
    name: p.name,
    isolated: p.isolated,
    description: p.description,
    createTime: p.createdAt,
    updateTime: p.updatedAt,
  };
}

export function flavorToProto(f: Flavor): FlavorMessage {
  return {
    id: f.id,
    name: f.name,
    vcpus: f.vcpus,
    ramMb: f.ramMb,
    diskGb: f.diskGb,
    extraSpecs: f.extraSpecs,
    createTime: f.createdAt,
    updateTime: f.updatedAt,
  };
}

export function aggregateToProto(a: Aggregate, hosts: string[]): AggregateMessage {
  return {
    id: a.id,
    name: a.name,
    availabilityZone: a.availabilityZone,
    hosts,
    metadata: a.metadata,
    createTime: a.createdAt,
    updateTime: a.updatedAt,
  };
}

export function hostToProto(h: Host): HostMessage {
  return {
    id: h.id,
    name: h.name,
    vcpus: h.vcpus,
    ramMb: h.ramMb,
    diskGb: h.diskGb,
    createTime: h.createdAt,
    updateTime: h.updatedAt,
  };
}

const NETBOOT_STATES = {
  pending: NetbootStateEnum.NETBOOT_STATE_PENDING,
  leased: NetbootStateEnum.NETBOOT_STATE_LEASED,
  fetched: NetbootStateEnum.NETBOOT_STATE_BOOT_FILE_FETCHED,
} as const;

export function netbootStateToProto(state: NetbootState | null | undefined): NetbootStateEnum {
  return state ? NETBOOT_STATES[state] : NetbootStateEnum.NETBOOT_STATE_UNSPECIFIED;
}
