import { status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import {
  CreateInstanceRequest,
  type Instance,
  type InstanceState,
  instanceStateToJSON,
} from '../../../build/gen/ingot/v1/instance.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { isServiceError } from '../errors.ts';
import { formatMap, formatTime, toProtoJson, type View } from '../output.ts';
import { flavorNamesById } from './flavor.ts';
import { projectNamesById } from './project.ts';
import { addSchedulingOptions, type SchedulingOptions, schedulingRequest } from './schedule.ts';

const STATE_PREFIX = 'INSTANCE_STATE_';

/** INSTANCE_STATE_SCHEDULED → `scheduled`, as tables show it. */
export function instanceStateName(state: InstanceState): string {
  const name = instanceStateToJSON(state);
  return name.startsWith(STATE_PREFIX) ? name.slice(STATE_PREFIX.length).toLowerCase() : `unknown(${state})`;
}

/** Ids to names, so tables show `acme` and `bm.small` rather than ids; ids without a name print as they are. */
export interface InstanceNames {
  projects: ReadonlyMap<string, string>;
  flavors: ReadonlyMap<string, string>;
}

const NO_NAMES: InstanceNames = { projects: new Map(), flavors: new Map() };

/** How instances print. The host shows as `node/bm1` or `host/hv1`. */
export function instanceView(names: InstanceNames = NO_NAMES): View<Instance> {
  const projectOf = (i: Instance) => names.projects.get(i.projectId) ?? i.projectId;
  const flavorOf = (i: Instance) => names.flavors.get(i.flavorId) ?? i.flavorId;
  const hostOf = (i: Instance) => (i.hostKind === '' ? '' : `${i.hostKind}/${i.hostName || i.hostId}`);
  return {
    columns: [
      { header: 'NAME', value: (i) => i.name },
      { header: 'STATE', value: (i) => instanceStateName(i.state) },
      { header: 'HOST', value: hostOf },
      { header: 'FLAVOR', value: flavorOf },
      { header: 'IMAGE', value: (i) => i.image },
      { header: 'PROJECT', value: projectOf },
    ],
    fields: (i) => [
      ['id', i.id],
      ['name', i.name],
      ['project', projectOf(i)],
      ['project_id', i.projectId],
      ['state', instanceStateName(i.state)],
      ['reason', i.reason],
      ['host', hostOf(i)],
      ['host_id', i.hostId],
      ['flavor', flavorOf(i)],
      ['flavor_id', i.flavorId],
      ['vcpus', String(i.vcpus)],
      ['ram_mb', String(i.ramMb)],
      ['disk_gb', String(i.diskGb)],
      ['image', i.image],
      ['hints', formatMap(i.hints)],
      ['availability_zone', i.availabilityZone],
      ['create_time', formatTime(i.createTime)],
      ['update_time', formatTime(i.updateTime)],
    ],
    json: (i) => toProtoJson(i, { enums: { state: (v) => instanceStateToJSON(v as InstanceState) } }),
  };
}

/** `bmctl boot … <name>` → CreateInstance; the controller validates every field. */
export function bootRequest(name: string, opts: SchedulingOptions): CreateInstanceRequest {
  return CreateInstanceRequest.fromPartial({ name, request: schedulingRequest(opts) });
}

/**
 * Project and flavor names for tables. Listing them needs the admin role, so
 * with a project member's token the tables show ids instead.
 */
async function instanceNames(ctx: CommandContext): Promise<InstanceNames> {
  try {
    const [projects, flavors] = await Promise.all([projectNamesById(ctx), flavorNamesById(ctx)]);
    return { projects, flavors };
  } catch (err) {
    if (isServiceError(err) && err.code === status.PERMISSION_DENIED) return NO_NAMES;
    throw err;
  }
}

export function registerInstanceCommands(program: Command, ctx: CommandContext): void {
  /** Names for tables; JSON prints the ids and needs no extra call. */
  const viewFor = async (): Promise<View<Instance>> =>
    instanceView(ctx.printer().format === 'table' ? await instanceNames(ctx) : undefined);

  const boot = program
    .command('boot')
    .description(
      'Boot an instance: pick a host and claim it, as in ' +
        '`bmctl boot --image ubuntu-24.04 --flavor bm.small --hint compute_type=bare_metal web1`. ' +
        'An admin boots on behalf of a project with --project. Fails with `no valid host: …` ' +
        '(the filter that ruled the last hosts out) when nothing fits.',
    )
    .argument('<name>', 'instance name, unique within its project');
  addSchedulingOptions(boot, { imageRequired: true }).action(
    async (name: string, opts: SchedulingOptions) => {
      const request = bootRequest(name, opts);
      // Names first: a failed lookup must not hide an instance that was booted.
      const view = await viewFor();
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('createInstance', request), view);
    },
  );

  const noun = program
    .command('instance')
    .description('Instances: a bare-metal node or a VM placement on a hypervisor host, each in a project');

  noun
    .command('list')
    .description('List instances (an admin sees every project’s unless --project is given)')
    .option('--project <project>', 'only this project’s instances (id or name)')
    .action(async (opts: { project?: string }) => {
      const inventory = await ctx.inventory();
      const instances = await listAll(async (page) => {
        const res = await inventory.call('listInstances', { ...page, project: opts.project ?? '' });
        return { items: res.instances, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(instances, await viewFor());
    });

  noun
    .command('show')
    .description('Show one instance')
    .argument('<id>', 'id, or name within the project')
    .option(
      '--project <project>',
      'project (id or name) a name is looked up in; required with an admin token',
    )
    .action(async (id: string, opts: { project?: string }) => {
      const inventory = await ctx.inventory();
      const instance = await inventory.call('getInstance', { id, project: opts.project ?? '' });
      ctx.printer().one(instance, await viewFor());
    });

  noun
    .command('delete')
    .description('Delete an instance and release the host it claimed')
    .argument('<id>', 'id, or name within the project')
    .option(
      '--project <project>',
      'project (id or name) a name is looked up in; required with an admin token',
    )
    .action(async (id: string, opts: { project?: string }) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteInstance', { id, project: opts.project ?? '' });
      ctx.printer().done(`instance ${id} deleted`);
    });
}
