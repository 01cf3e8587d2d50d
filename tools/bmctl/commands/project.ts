import type { Command } from 'commander';
import { CreateProjectRequest, type Project } from '../../../build/gen/ingot/v1/inventory.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { formatTime, toProtoJson, type View, yesNo } from '../output.ts';

export const projectView: View<Project> = {
  columns: [
    { header: 'NAME', value: (p) => p.name },
    { header: 'ISOLATED', value: (p) => yesNo(p.isolated) },
    { header: 'DESCRIPTION', value: (p) => p.description },
  ],
  fields: (p) => [
    ['id', p.id],
    ['name', p.name],
    ['isolated', yesNo(p.isolated)],
    ['description', p.description],
    ['create_time', formatTime(p.createTime)],
    ['update_time', formatTime(p.updateTime)],
  ],
  json: (p) => toProtoJson(p),
};

export function projectCreateRequest(
  name: string,
  opts: { isolated?: boolean; description?: string },
): CreateProjectRequest {
  return CreateProjectRequest.fromPartial({
    project: { name, isolated: opts.isolated ?? false, description: opts.description },
  });
}

export function registerProjectCommands(program: Command, ctx: CommandContext): void {
  const noun = program.command('project').description('Tenants');

  noun
    .command('create')
    .description('Create a project')
    .argument('<name>', 'unique name')
    .option('--isolated', 'only ever place its instances on its own aggregate’s hosts')
    .option('--description <text>', 'free text')
    .action(async (name: string, opts: { isolated?: boolean; description?: string }) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('createProject', projectCreateRequest(name, opts)), projectView);
    });

  noun
    .command('list')
    .description('List projects')
    .action(async () => {
      const inventory = await ctx.inventory();
      const projects = await listAll(async (page) => {
        const res = await inventory.call('listProjects', page);
        return { items: res.projects, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(projects, projectView);
    });

  noun
    .command('show')
    .description('Show one project')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('getProject', { id }), projectView);
    });

  noun
    .command('delete')
    .description('Delete a project')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteProject', { id });
      ctx.printer().done(`project ${id} deleted`);
    });
}

/** Project ids to names, for tables that show an instance's project. */
export async function projectNamesById(ctx: CommandContext): Promise<Map<string, string>> {
  const inventory = await ctx.inventory();
  const projects = await listAll(async (page) => {
    const res = await inventory.call('listProjects', page);
    return { items: res.projects, nextPageToken: res.nextPageToken };
  });
  return new Map(projects.map((p) => [p.id, p.name]));
}
