import { status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import {
  CreateInstanceRequest,
  type Instance,
  type InstanceEvent,
  InstanceState,
  instanceStateToJSON,
} from '../../../build/gen/ingot/v1/instance.ts';
import { type Inventory, listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { BmctlError, describeFailure, EXIT_FAILURE, isServiceError } from '../errors.ts';
import { formatMap, formatTime, renderTable, toProtoJson, type View } from '../output.ts';
import { describeProgress, formatDuration, LiveLines, type LiveOutput, renderBar } from '../progress.ts';
import { flavorNamesById } from './flavor.ts';
import { projectNamesById } from './project.ts';
import { addSchedulingOptions, type SchedulingOptions, schedulingRequest } from './schedule.ts';

const STATE_PREFIX = 'INSTANCE_STATE_';
/** Deadline of a reboot: a soft power-off waits for the OS, then power-on for the chassis (60 s each by default). */
const REBOOT_CALL_TIMEOUT_MS = 300_000;
/** Width of the progress bar of a deploy or wipe in a live display on a terminal. */
const BAR_WIDTH = 20;

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

/** The claimed host as `node/bm1` or `host/hv1`; empty before one is claimed. */
function hostOf(i: Instance): string {
  return i.hostKind === '' ? '' : `${i.hostKind}/${i.hostName || i.hostId}`;
}

/** The project network by name, or by id when the controller sent no name. */
function networkOf(i: Instance): string {
  return i.networkName || i.networkId;
}

/** How instances print. The host shows as `node/bm1` or `host/hv1`. */
export function instanceView(names: InstanceNames = NO_NAMES): View<Instance> {
  const projectOf = (i: Instance) => names.projects.get(i.projectId) ?? i.projectId;
  const flavorOf = (i: Instance) => names.flavors.get(i.flavorId) ?? i.flavorId;
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
      ['step', i.step],
      ['progress', describeProgress(i.progress)],
      ['retries', String(i.retries)],
      ['reason', i.reason],
      ['host', hostOf(i)],
      ['host_id', i.hostId],
      ['network', networkOf(i)],
      ['network_id', i.networkId],
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
    json: (i) => {
      const json = toProtoJson(i, { enums: { state: (v) => instanceStateToJSON(v as InstanceState) } });
      json.progress = i.progress ? toProtoJson(i.progress) : null;
      json.steps = i.steps.map((step) => toProtoJson(step));
      return json;
    },
  };
}

/**
 * The steps of the instance's current flow, oldest first, as a table after
 * `instance show`'s fields; a running step's duration counts up to `nowMs`.
 * Empty when no flow has run.
 */
export function renderStepTimeline(i: Instance, nowMs: number): string {
  if (i.steps.length === 0) return '';
  return renderTable(
    ['STEP', 'FLOW', 'STATE', 'START', 'DURATION', 'MESSAGE'],
    i.steps.map((s) => [
      s.name,
      s.flow,
      s.state,
      formatTime(s.startTime),
      s.startTime ? formatDuration((s.endTime?.getTime() ?? nowMs) - s.startTime.getTime()) : '',
      s.message,
    ]),
  );
}

/** `bmctl boot`'s own options besides the scheduling ones. */
export interface BootOptions extends SchedulingOptions {
  network?: string;
  wait?: boolean;
}

/** `bmctl boot … <name>` → CreateInstance; the controller validates every field. */
export function bootRequest(name: string, opts: BootOptions): CreateInstanceRequest {
  return CreateInstanceRequest.fromPartial({
    name,
    request: schedulingRequest(opts),
    network: opts.network ?? '',
  });
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

/**
 * One instance's line in a live display, e.g.
 * `web1  deploying  deploying  [#####...............]  writing 1.0 GiB / 4.0 GiB (25%) 512.0 MiB/s ETA 6s`
 * (the bar only with `bar`), and its milestone: state, step, progress phase
 * and retries, whose every change a log keeps.
 */
export function describeInstanceLine(
  label: string,
  i: Instance | undefined,
  opts: { deleted: boolean; bar: boolean; labelWidth: number },
): { text: string; milestone: string } {
  const head = label.padEnd(opts.labelWidth);
  if (opts.deleted) return { text: `${head}  deleted`, milestone: 'deleted' };
  if (i === undefined) return { text: `${head}  waiting`, milestone: 'waiting' };
  const state = instanceStateName(i.state);
  const detail: string[] = [];
  if (i.state === InstanceState.INSTANCE_STATE_ERROR) {
    detail.push(i.step ? `${i.step}: ${i.reason}` : i.reason);
  } else if (
    i.state === InstanceState.INSTANCE_STATE_DEPLOYING ||
    i.state === InstanceState.INSTANCE_STATE_DELETING
  ) {
    detail.push(i.retries > 0 ? `${i.step} (retry ${i.retries})` : i.step);
    const p = i.progress;
    if (p && (p.phase !== '' || p.bytesTotal > 0)) {
      if (opts.bar && p.bytesTotal > 0) detail.push(renderBar(p.bytesDone / p.bytesTotal, BAR_WIDTH));
      detail.push(describeProgress(p));
    }
  } else {
    const network = networkOf(i);
    detail.push(network ? `${hostOf(i)} on ${network}` : hostOf(i));
  }
  return {
    text: `${head}  ${state.padEnd(9)}  ${detail.filter((d) => d !== '').join('  ')}`.trimEnd(),
    milestone: [state, i.step, i.progress?.phase ?? '', i.retries].join('|'),
  };
}

/** An instance to follow: how to ask for it, how to call it, and what is known of it already. */
interface FollowTarget {
  id: string;
  project: string;
  label: string;
  instance?: Instance;
  /** False: only show `instance` (a hypervisor placement, which no flow changes). @default true */
  watch?: boolean;
}

/** How following one instance ended. */
interface FollowOutcome {
  label: string;
  /** The instance as last seen. */
  instance: Instance | undefined;
  deleted: boolean;
  /** The watch failed (the controller refused it, or the connection broke). */
  error?: unknown;
}

/** What the follower waits for: ACTIVE (boot), gone (delete), or the end of the stream (watch). */
type Goal = 'active' | 'deleted' | 'settled';

/**
 * Follows instances with WatchInstance, one stream each, concurrently,
 * drawing one line per instance on `display` (if any) and handing every
 * event to `onEvent`. Resolves once every stream ended; a stream's failure
 * is in its outcome, not thrown. With `goneIsDeleted`, NOT_FOUND means the
 * instance was gone before the watch began (a delete that finished first).
 */
async function followInstances(
  inventory: Inventory,
  targets: readonly FollowTarget[],
  opts: {
    untilDeleted: boolean;
    goneIsDeleted?: boolean;
    display: LiveLines | undefined;
    onEvent?: (event: InstanceEvent) => void;
  },
): Promise<FollowOutcome[]> {
  const labelWidth = Math.max(0, ...targets.map((t) => t.label.length));
  const draw = (key: string, outcome: FollowOutcome) => {
    if (!opts.display) return;
    const label = outcome.instance?.name || outcome.label;
    const { text, milestone } = describeInstanceLine(label, outcome.instance, {
      deleted: outcome.deleted,
      bar: opts.display.tty,
      labelWidth,
    });
    opts.display.set(key, text, milestone);
  };
  return Promise.all(
    targets.map(async (target, index) => {
      const key = String(index);
      const outcome: FollowOutcome = { label: target.label, instance: target.instance, deleted: false };
      if (target.instance) draw(key, outcome);
      if (target.watch === false) return outcome;
      try {
        const events = inventory.stream('watchInstance', {
          id: target.id,
          project: target.project,
          untilDeleted: opts.untilDeleted,
        });
        for await (const event of events) {
          opts.onEvent?.(event);
          if (event.instance) outcome.instance = event.instance;
          outcome.deleted = event.deleted;
          draw(key, outcome);
          if (event.deleted) break;
        }
      } catch (err) {
        if (opts.goneIsDeleted && isServiceError(err) && err.code === status.NOT_FOUND) {
          outcome.deleted = true;
          draw(key, outcome);
        } else {
          outcome.error = err;
        }
      }
      return outcome;
    }),
  );
}

/** Why following an instance did not reach `goal`, as a sentence naming it; undefined when it did. */
function followFailure(outcome: FollowOutcome, goal: Goal, endpoint: string): string | undefined {
  const who = `instance ${outcome.label}`;
  if (outcome.error !== undefined) {
    return `watching ${who} failed: ${describeFailure(outcome.error, endpoint, { debug: false }).line}`;
  }
  if (outcome.deleted) return goal === 'active' ? `${who} was deleted before it became active` : undefined;
  const i = outcome.instance;
  if (i === undefined) return `the watch of ${who} ended before the controller sent it`;
  if (i.state === InstanceState.INSTANCE_STATE_ERROR) {
    return `${who} failed${i.step ? ` in step ${i.step}` : ''}: ${i.reason || 'the controller gave no reason'}`;
  }
  if (goal !== 'deleted' && i.state === InstanceState.INSTANCE_STATE_ACTIVE) return undefined;
  // A hypervisor placement is only a claim: booted once scheduled.
  if (goal === 'active' && i.hostKind === 'host' && i.state === InstanceState.INSTANCE_STATE_SCHEDULED) {
    return undefined;
  }
  return `the watch of ${who} ended while it was ${instanceStateName(i.state)}`;
}

/** A per-instance failure, e.g. `instance web2 failed in step deploying: …`. */
interface InstanceFailure {
  label: string;
  line: string;
}

/** One `bmctl: …` line per failure on stderr, for commands that handle several instances. */
function printFailures(ctx: CommandContext, failures: readonly InstanceFailure[]): void {
  for (const f of failures) ctx.progress.write(`bmctl: ${f.line}\n`);
}

/**
 * Exit 1 when anything failed: the failure itself when the command handled
 * one instance, else `2 of 3 instances failed: web2, web3` (each printed before).
 */
function throwIfFailed(failures: readonly InstanceFailure[], total: number): void {
  const [first] = failures;
  if (first === undefined) return;
  if (total === 1) throw new BmctlError(first.line, { exitCode: EXIT_FAILURE });
  throw new BmctlError(
    `${failures.length} of ${total} instances failed: ${failures.map((f) => f.label).join(', ')}`,
    { exitCode: EXIT_FAILURE },
  );
}

export function registerInstanceCommands(program: Command, ctx: CommandContext): void {
  /** Names for tables; JSON prints the ids and needs no extra call. */
  const viewFor = async (): Promise<View<Instance>> =>
    instanceView(ctx.printer().format === 'table' ? await instanceNames(ctx) : undefined);

  /** One instance: its fields, then (tables) the step timeline of its current flow. */
  const printInstance = (instance: Instance, view: View<Instance>) => {
    const printer = ctx.printer();
    printer.one(instance, view);
    const timeline = renderStepTimeline(instance, ctx.now());
    if (timeline !== '' && printer.format === 'table') {
      printer.report({ text: () => `\n${timeline}`, json: () => ({}) });
    }
  };

  /**
   * Where a live display goes: in tables it is the output (stdout); with
   * `-o json` stdout is for JSON, so people get it on stderr, on a terminal only.
   */
  const liveDisplay = (): LiveLines | undefined => {
    const out: LiveOutput | undefined =
      ctx.printer().format === 'table' ? ctx.stdout : ctx.progress.tty ? ctx.progress : undefined;
    return out && new LiveLines({ ...out, now: () => ctx.now() });
  };

  const boot = program
    .command('boot')
    .description(
      'Boot instances: for each name pick a host and claim it (in parallel), as in ' +
        '`bmctl boot --image ubuntu-24.04 --flavor bm.small --hint compute_type=bare_metal web1 web2`. ' +
        'An admin boots on behalf of a project with --project. A name fails with `no valid host: …` ' +
        '(the filter that ruled the last hosts out) when nothing fits; the others still boot (exit 1). ' +
        'With --wait, follows the provisioning live until every instance is active (exit 1 if one fails).',
    )
    .argument('<names...>', 'instance names, each unique within its project')
    .option(
      '--network <network>',
      'project network (id or name) for bare metal; default: the project’s only one',
    )
    .option(
      '--wait',
      'follow the provisioning until active (a live display; exit 1 with the reason on error)',
    );
  addSchedulingOptions(boot, { imageRequired: true }).action(async (names: string[], opts: BootOptions) => {
    const requests = names.map((name) => bootRequest(name, opts));
    // Names first: a failed lookup must not hide an instance that was booted.
    const view = await viewFor();
    const inventory = await ctx.inventory();
    const settled = await Promise.allSettled(requests.map((r) => inventory.call('createInstance', r)));
    if (names.length === 1 && settled[0]?.status === 'rejected') throw settled[0].reason;

    const failures: InstanceFailure[] = [];
    const created: Instance[] = [];
    settled.forEach((result, index) => {
      const label = names[index] ?? '';
      if (result.status === 'fulfilled') created.push(result.value);
      else {
        const line = describeFailure(result.reason, inventory.endpoint, { debug: false }).line;
        failures.push({ label, line: `instance ${label}: ${line}` });
      }
    });
    // Before a live display takes over the screen.
    if (names.length > 1) printFailures(ctx, failures);
    const printer = ctx.printer();

    if (!opts.wait) {
      if (names.length === 1 && created[0]) printInstance(created[0], view);
      else if (created.length > 0) printer.many(created, view);
      throwIfFailed(failures, names.length);
      return;
    }

    const outcomes = await followInstances(
      inventory,
      created.map((instance) => ({
        id: instance.id,
        project: '',
        label: instance.name,
        instance,
        watch: instance.hostKind === 'node',
      })),
      { untilDeleted: false, display: liveDisplay() },
    );
    if (printer.format === 'json') {
      const last = outcomes.map((o) => o.instance).filter((i): i is Instance => i !== undefined);
      if (names.length === 1 && last[0]) printer.one(last[0], view);
      else printer.many(last, view);
    }
    const waitFailures = outcomes.flatMap((o) => {
      const line = followFailure(o, 'active', inventory.endpoint);
      return line === undefined ? [] : [{ label: o.label, line }];
    });
    if (names.length > 1) printFailures(ctx, waitFailures);
    const inArgumentOrder = (f: InstanceFailure) => names.indexOf(f.label);
    throwIfFailed(
      [...failures, ...waitFailures].sort((a, b) => inArgumentOrder(a) - inArgumentOrder(b)),
      names.length,
    );
  });

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

  const projectOption = [
    '--project <project>',
    'project (id or name) a name is looked up in; required with an admin token',
  ] as const;

  noun
    .command('show')
    .description('Show one instance, with the steps of its current provisioning or teardown flow')
    .argument('<id>', 'id, or name within the project')
    .option(...projectOption)
    .action(async (id: string, opts: { project?: string }) => {
      const inventory = await ctx.inventory();
      const instance = await inventory.call('getInstance', { id, project: opts.project ?? '' });
      printInstance(instance, await viewFor());
    });

  noun
    .command('watch')
    .description(
      'Follow an instance live: state, step, and a deploy’s or wipe’s progress. Ends once it is ' +
        'active or in error (exit 1 with the reason), or deleted; with --until-deleted, only once it is gone. ' +
        'With -o json, prints every InstanceEvent.',
    )
    .argument('<id>', 'id, or name within the project')
    .option(...projectOption)
    .option('--until-deleted', 'keep following an active or failed instance until it is deleted')
    .action(async (id: string, opts: { project?: string; untilDeleted?: boolean }) => {
      const inventory = await ctx.inventory();
      const printer = ctx.printer();
      const json = printer.format === 'json';
      const [outcome] = await followInstances(inventory, [{ id, project: opts.project ?? '', label: id }], {
        untilDeleted: opts.untilDeleted ?? false,
        display: json ? undefined : liveDisplay(),
        onEvent: (event) => {
          if (!json) return;
          printer.report({
            text: () => '',
            json: () => ({
              instance: event.instance ? instanceView().json(event.instance) : null,
              progress_only: event.progressOnly,
              deleted: event.deleted,
            }),
          });
        },
      });
      if (outcome === undefined) return;
      const line = followFailure(outcome, opts.untilDeleted ? 'deleted' : 'settled', inventory.endpoint);
      throwIfFailed(line === undefined ? [] : [{ label: id, line }], 1);
    });

  noun
    .command('delete')
    .description(
      'Delete an instance. A hypervisor placement is released at once; a bare-metal instance goes to ' +
        'deleting while its node is wiped and released (follow it with --wait or `instance watch`).',
    )
    .argument('<id>', 'id, or name within the project')
    .option(...projectOption)
    .option('--full-wipe', 'zero the whole disk, not only its partition tables and signatures (slow)')
    .option('--wait', 'follow the teardown until the instance is gone (exit 1 with the reason on error)')
    .action(async (id: string, opts: { project?: string; fullWipe?: boolean; wait?: boolean }) => {
      const view = await viewFor();
      const inventory = await ctx.inventory();
      const instance = await inventory.call('deleteInstance', {
        id,
        project: opts.project ?? '',
        fullWipe: opts.fullWipe ?? false,
      });
      const printer = ctx.printer();
      const released = instance.state !== InstanceState.INSTANCE_STATE_DELETING;
      if (!opts.wait || released) {
        if (released && printer.format === 'table') printer.done(`instance ${id} deleted`);
        else printInstance(instance, view);
        return;
      }
      const [outcome] = await followInstances(
        inventory,
        [{ id: instance.id, project: '', label: instance.name || id, instance }],
        { untilDeleted: false, goneIsDeleted: true, display: liveDisplay() },
      );
      if (outcome === undefined) return;
      const line = followFailure(outcome, 'deleted', inventory.endpoint);
      throwIfFailed(line === undefined ? [] : [{ label: id, line }], 1);
    });

  noun
    .command('reboot')
    .description(
      'Reboot an active bare-metal instance through its node’s BMC: the OS shuts down first, ' +
        'then power on; --hard resets at once',
    )
    .argument('<id>', 'id, or name within the project')
    .option(...projectOption)
    .option('--hard', 'reset at once instead of asking the OS to shut down first')
    .action(async (id: string, opts: { project?: string; hard?: boolean }) => {
      const view = await viewFor();
      const inventory = await ctx.inventory();
      const instance = await inventory.call(
        'rebootInstance',
        { id, project: opts.project ?? '', hard: opts.hard ?? false },
        { timeoutMs: REBOOT_CALL_TIMEOUT_MS },
      );
      printInstance(instance, view);
    });
}
