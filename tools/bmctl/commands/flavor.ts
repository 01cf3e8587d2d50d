import type { Command } from 'commander';
import { CreateFlavorRequest, type Flavor } from '../../../build/gen/ingot/v1/inventory.ts';
import { collect, parseKeyValues, parseWholeNumber } from '../args.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { formatMap, formatTime, toProtoJson, type View } from '../output.ts';

export const flavorView: View<Flavor> = {
  columns: [
    { header: 'NAME', value: (f) => f.name },
    { header: 'VCPUS', value: (f) => String(f.vcpus) },
    { header: 'RAM_MB', value: (f) => String(f.ramMb) },
    { header: 'DISK_GB', value: (f) => String(f.diskGb) },
    { header: 'EXTRA_SPECS', value: (f) => formatMap(f.extraSpecs) },
  ],
  fields: (f) => [
    ['id', f.id],
    ['name', f.name],
    ['vcpus', String(f.vcpus)],
    ['ram_mb', String(f.ramMb)],
    ['disk_gb', String(f.diskGb)],
    ['extra_specs', formatMap(f.extraSpecs)],
    ['create_time', formatTime(f.createTime)],
    ['update_time', formatTime(f.updateTime)],
  ],
  json: (f) => toProtoJson(f),
};

export interface FlavorCreateOptions {
  vcpus: number;
  ram: number;
  disk: number;
  spec?: string[];
}

export function flavorCreateRequest(name: string, opts: FlavorCreateOptions): CreateFlavorRequest {
  return CreateFlavorRequest.fromPartial({
    flavor: {
      name,
      vcpus: opts.vcpus,
      ramMb: opts.ram,
      diskGb: opts.disk,
      extraSpecs: parseKeyValues(opts.spec ?? [], '--spec'),
    },
  });
}

export function registerFlavorCommands(program: Command, ctx: CommandContext): void {
  const noun = program.command('flavor').description('Instance sizes');

  noun
    .command('create')
    .description('Create a flavor')
    .argument('<name>', 'unique name')
    .requiredOption('--vcpus <n>', 'virtual CPUs', parseWholeNumber)
    .requiredOption('--ram <mb>', 'memory in MB', parseWholeNumber)
    .requiredOption('--disk <gb>', 'root disk in GB', parseWholeNumber)
    .option('--spec <key=value>', 'extra spec; repeat for several', collect)
    .action(async (name: string, opts: FlavorCreateOptions) => {
      const request = flavorCreateRequest(name, opts);
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('createFlavor', request), flavorView);
    });

  noun
    .command('list')
    .description('List flavors')
    .action(async () => {
      const inventory = await ctx.inventory();
      const flavors = await listAll(async (page) => {
        const res = await inventory.call('listFlavors', page);
        return { items: res.flavors, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(flavors, flavorView);
    });

  noun
    .command('show')
    .description('Show one flavor')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('getFlavor', { id }), flavorView);
    });

  noun
    .command('delete')
    .description('Delete a flavor')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteFlavor', { id });
      ctx.printer().done(`flavor ${id} deleted`);
    });
}

/** Flavor ids to names, for tables that show an instance's flavor. */
export async function flavorNamesById(ctx: CommandContext): Promise<Map<string, string>> {
  const inventory = await ctx.inventory();
  const flavors = await listAll(async (page) => {
    const res = await inventory.call('listFlavors', page);
    return { items: res.flavors, nextPageToken: res.nextPageToken };
  });
  return new Map(flavors.map((f) => [f.id, f.name]));
}
