import type { Command } from 'commander';
import { CreateHostRequest, type Host } from '../../../build/gen/ingot/v1/inventory.ts';
import { parseWholeNumber } from '../args.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { formatTime, toProtoJson, type View } from '../output.ts';

export const hostView: View<Host> = {
  columns: [
    { header: 'NAME', value: (h) => h.name },
    { header: 'VCPUS', value: (h) => String(h.vcpus) },
    { header: 'RAM_MB', value: (h) => String(h.ramMb) },
    { header: 'DISK_GB', value: (h) => String(h.diskGb) },
  ],
  fields: (h) => [
    ['id', h.id],
    ['name', h.name],
    ['vcpus', String(h.vcpus)],
    ['ram_mb', String(h.ramMb)],
    ['disk_gb', String(h.diskGb)],
    ['create_time', formatTime(h.createTime)],
    ['update_time', formatTime(h.updateTime)],
  ],
  json: (h) => toProtoJson(h),
};

export interface HostAddOptions {
  vcpus: number;
  ram: number;
  disk: number;
}

export function hostAddRequest(name: string, opts: HostAddOptions): CreateHostRequest {
  return CreateHostRequest.fromPartial({
    host: { name, vcpus: opts.vcpus, ramMb: opts.ram, diskGb: opts.disk },
  });
}

export function registerHostCommands(program: Command, ctx: CommandContext): void {
  const noun = program
    .command('host')
    .description('Hypervisor hosts whose VMs Ingot places but does not spawn');

  noun
    .command('add')
    .description('Register a hypervisor host')
    .argument('<name>', 'unique name')
    .requiredOption('--vcpus <n>', 'virtual CPUs it offers', parseWholeNumber)
    .requiredOption('--ram <mb>', 'memory it offers, in MB', parseWholeNumber)
    .requiredOption('--disk <gb>', 'disk it offers, in GB', parseWholeNumber)
    .action(async (name: string, opts: HostAddOptions) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('createHost', hostAddRequest(name, opts)), hostView);
    });

  noun
    .command('list')
    .description('List hypervisor hosts')
    .action(async () => {
      const inventory = await ctx.inventory();
      const hosts = await listAll(async (page) => {
        const res = await inventory.call('listHosts', page);
        return { items: res.hosts, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(hosts, hostView);
    });

  noun
    .command('show')
    .description('Show one hypervisor host')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('getHost', { id }), hostView);
    });

  noun
    .command('delete')
    .description('Delete a hypervisor host')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteHost', { id });
      ctx.printer().done(`host ${id} deleted`);
    });
}
