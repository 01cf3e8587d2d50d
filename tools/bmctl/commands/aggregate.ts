import type { Command } from 'commander';
import {
  type Aggregate,
  CreateAggregateRequest,
  SetAggregateMetadataRequest,
} from '../../../build/gen/ingot/v1/inventory.ts';
import { eitherOf, parseMetadataChanges } from '../args.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { formatMap, formatTime, toProtoJson, type View } from '../output.ts';

export const aggregateView: View<Aggregate> = {
  columns: [
    { header: 'NAME', value: (a) => a.name },
    { header: 'ZONE', value: (a) => a.availabilityZone },
    { header: 'HOSTS', value: (a) => a.hosts.join(', ') },
    { header: 'METADATA', value: (a) => formatMap(a.metadata) },
  ],
  fields: (a) => [
    ['id', a.id],
    ['name', a.name],
    ['availability_zone', a.availabilityZone],
    ['hosts', a.hosts.join(', ')],
    ['metadata', formatMap(a.metadata)],
    ['create_time', formatTime(a.createTime)],
    ['update_time', formatTime(a.updateTime)],
  ],
  json: (a) => toProtoJson(a),
};

export function aggregateCreateRequest(
  name: string,
  zone: string | undefined,
  opts: { zone?: string },
): CreateAggregateRequest {
  return CreateAggregateRequest.fromPartial({
    aggregate: { name, availabilityZone: eitherOf(zone, opts.zone, { argument: '<zone>', flag: '--zone' }) },
  });
}

/** `set-metadata agg a=1 b` → set `a`, unset `b` (nova's convention). */
export function aggregateMetadataRequest(
  aggregate: string,
  changes: readonly string[],
): SetAggregateMetadataRequest {
  return SetAggregateMetadataRequest.fromPartial({ aggregate, ...parseMetadataChanges(changes) });
}

export function registerAggregateCommands(program: Command, ctx: CommandContext): void {
  const noun = program
    .command('aggregate')
    .description('Host aggregates: groups of hosts and nodes with metadata');

  noun
    .command('create')
    .description('Create an aggregate')
    .argument('<name>', 'unique name')
    .argument('[zone]', 'availability zone it forms')
    .option('--zone <zone>', 'instead of <zone>')
    .action(async (name: string, zone: string | undefined, opts: { zone?: string }) => {
      const request = aggregateCreateRequest(name, zone, opts);
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('createAggregate', request), aggregateView);
    });

  noun
    .command('add-host')
    .description('Add a hypervisor host or a node to an aggregate')
    .argument('<aggregate>', 'id or name')
    .argument('<host>', 'hypervisor host or node, by id or name')
    .action(async (aggregate: string, host: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('addAggregateHost', { aggregate, host }), aggregateView);
    });

  noun
    .command('remove-host')
    .description('Remove a hypervisor host or a node from an aggregate')
    .argument('<aggregate>', 'id or name')
    .argument('<host>', 'hypervisor host or node, by id or name')
    .action(async (aggregate: string, host: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('removeAggregateHost', { aggregate, host }), aggregateView);
    });

  noun
    .command('set-metadata')
    .description(
      'Change metadata: key=value sets a key, a bare key unsets it. ' +
        'project_id=<project> dedicates the aggregate to a project (id or name).',
    )
    .argument('<aggregate>', 'id or name')
    .argument('<metadata...>', 'key=value to set, key to unset')
    .action(async (aggregate: string, changes: string[]) => {
      const request = aggregateMetadataRequest(aggregate, changes);
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('setAggregateMetadata', request), aggregateView);
    });

  noun
    .command('list')
    .description('List aggregates')
    .action(async () => {
      const inventory = await ctx.inventory();
      const aggregates = await listAll(async (page) => {
        const res = await inventory.call('listAggregates', page);
        return { items: res.aggregates, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(aggregates, aggregateView);
    });

  noun
    .command('show')
    .description('Show one aggregate')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('getAggregate', { id }), aggregateView);
    });

  noun
    .command('delete')
    .description('Delete an aggregate')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteAggregate', { id });
      ctx.printer().done(`aggregate ${id} deleted`);
    });
}
