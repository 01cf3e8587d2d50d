import { type Command, Option } from 'commander';
import {
  type FilterStep,
  SchedulingRequest,
  SelectDestinationsRequest,
  type SelectDestinationsResponse,
} from '../../../build/gen/ingot/v1/scheduler.ts';
import { collect, parseKeyValues, parseWholeNumber } from '../args.ts';
import type { CommandContext } from '../context.ts';
import { renderTable, toProtoJson } from '../output.ts';

/** The SchedulingRequest's fields as `boot` and `schedule` take them. */
export interface SchedulingOptions {
  flavor: string;
  image?: string;
  hint?: string[];
  availabilityZone?: string;
  project?: string;
}

/** Adds the SchedulingRequest's options; `--image` is mandatory where the controller needs it (boot). */
export function addSchedulingOptions(command: Command, opts: { imageRequired: boolean }): Command {
  return command
    .addOption(
      new Option('--image <image>', 'image name, recorded with the instance').makeOptionMandatory(
        opts.imageRequired,
      ),
    )
    .requiredOption('--flavor <flavor>', 'flavor, by id or name')
    .option(
      '--hint <key=value>',
      'scheduler hint, e.g. compute_type=bare_metal for a bare-metal node; repeat for several',
      collect,
    )
    .option('--availability-zone <zone>', 'only hosts in this availability zone')
    .option('--project <project>', 'project (id or name) to act for; required with an admin token');
}

/** `--hint a=1 --hint b=2` → hints `{a: '1', b: '2'}`; the controller checks the rest. */
export function schedulingRequest(opts: SchedulingOptions): SchedulingRequest {
  return SchedulingRequest.fromPartial({
    project: opts.project,
    flavor: opts.flavor,
    image: opts.image,
    hints: parseKeyValues(opts.hint ?? [], '--hint'),
    availabilityZone: opts.availabilityZone,
  });
}

export interface ScheduleOptions extends SchedulingOptions {
  count?: number;
  explain?: boolean;
}

/** SelectDestinations; no `--count` sends 0, which the controller reads as 1. */
export function selectDestinationsRequest(opts: ScheduleOptions): SelectDestinationsRequest {
  return SelectDestinationsRequest.fromPartial({
    request: schedulingRequest(opts),
    count: opts.count,
    explain: opts.explain ?? false,
  });
}

/** Weights are comparable only within one answer; three decimals tell them apart. */
function formatWeight(weight: number): string {
  return weight.toFixed(3);
}

/**
 * One line per filter, `FILTER  in → out`, each followed by the hosts it
 * rejected (the controller sends up to 10) indented with their reasons.
 */
export function renderTrace(trace: readonly FilterStep[]): string {
  const filterWidth = Math.max(0, ...trace.map((step) => step.filter.length));
  const lines: string[] = [];
  for (const step of trace) {
    lines.push(`${step.filter.padEnd(filterWidth)}  ${step.hostsIn} → ${step.hostsOut}`);
    const hostWidth = Math.max(0, ...step.rejected.map((r) => r.host.length));
    for (const r of step.rejected) lines.push(`  ${r.host.padEnd(hostWidth)}  ${r.reason}`);
    const unlisted = step.hostsIn - step.hostsOut - step.rejected.length;
    if (unlisted > 0) lines.push(`  … and ${unlisted} more`);
  }
  return lines.map((line) => `${line}\n`).join('');
}

/** The destinations (or why there is none), then the trace when there is one. */
export function renderSelection(response: SelectDestinationsResponse): string {
  const answer =
    response.destinations.length > 0
      ? renderTable(
          ['KIND', 'NAME', 'WEIGHT'],
          response.destinations.map((d) => [d.kind, d.name, formatWeight(d.weight)]),
        )
      : `${response.noValidHost || 'no valid host'}\n`;
  return response.trace.length > 0 ? `${answer}\n${renderTrace(response.trace)}` : answer;
}

/** The whole response as proto JSON, nested messages included. */
export function selectionJson(response: SelectDestinationsResponse): Record<string, unknown> {
  return {
    ...toProtoJson(response),
    destinations: response.destinations.map((d) => toProtoJson(d)),
    trace: response.trace.map((step) => ({
      ...toProtoJson(step),
      rejected: step.rejected.map((r) => toProtoJson(r)),
    })),
  };
}

export function registerScheduleCommands(program: Command, ctx: CommandContext): void {
  const command = program
    .command('schedule')
    .description(
      'Ask the scheduler where an instance would land, claiming nothing. ' +
        'No valid host is an answer, not a failure: it prints why and exits 0.',
    );
  addSchedulingOptions(command, { imageRequired: false })
    .option(
      '--count <n>',
      'how many destinations to show, best first (default 1, at most 100)',
      parseWholeNumber,
    )
    .option('--explain', 'also show each filter’s effect and the hosts it rejected, with reasons')
    .action(async (opts: ScheduleOptions) => {
      const request = selectDestinationsRequest(opts);
      const inventory = await ctx.inventory();
      const response = await inventory.call('selectDestinations', request);
      ctx.printer().report({ text: () => renderSelection(response), json: () => selectionJson(response) });
    });
}
