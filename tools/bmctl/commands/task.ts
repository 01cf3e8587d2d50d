import { Argument, type Command, Option } from 'commander';
import { type Image, ImageStatus, imageStatusToJSON } from '../../../build/gen/ingot/v1/image.ts';
import {
  type Task,
  type TaskEvent,
  type TaskKind,
  TaskState,
  taskKindToJSON,
  taskStateToJSON,
} from '../../../build/gen/ingot/v1/task.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { BmctlError, EXIT_FAILURE, UsageError } from '../errors.ts';
import { formatTime, toProtoJson, type View } from '../output.ts';
import { describeProgress } from '../progress.ts';
import { AgentServices } from '../services.ts';
import { ensureImage } from './image.ts';

// Shared with `instance watch` since it moved to progress.ts; callers of this module keep importing it here.
export { describeProgress };

const KINDS = ['deploy', 'wipe', 'inspect', 'reboot', 'poweroff', 'capture'] as const;
type Kind = (typeof KINDS)[number];
const STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
/** How often `--watch` looks at a captured image until the controller has checked it. @default 500 ms */
const IMAGE_POLL_MS = 500;

export const kindName = (k: TaskKind) => taskKindToJSON(k).replace('TASK_KIND_', '').toLowerCase();
export const stateName = (s: TaskState) => taskStateToJSON(s).replace('TASK_STATE_', '').toLowerCase();
const finished = (s: TaskState) =>
  s === TaskState.TASK_STATE_SUCCEEDED ||
  s === TaskState.TASK_STATE_FAILED ||
  s === TaskState.TASK_STATE_CANCELLED;

function target(t: Task): string {
  const { spec } = t;
  if (spec?.deploy) return `${spec.deploy.image} → ${spec.deploy.disk}`;
  if (spec?.wipe) return `${spec.wipe.disk}${spec.wipe.full ? ' (full)' : ''}`;
  if (spec?.capture) {
    const into = spec.capture.image
      ? `image ${spec.capture.image} via ${spec.capture.receiver}`
      : spec.capture.receiver;
    return `${spec.capture.disk} → ${into}${spec.capture.compress ? ' (zstd)' : ''}`;
  }
  return '';
}

/** A capture's unreadable ranges: `3 (65536 bytes at 1048576, …)`; empty when none. */
function unreadable(t: Task): string {
  const ranges = t.outcome?.unreadable ?? [];
  if (ranges.length === 0) return '';
  return `${ranges.length} (${ranges.map((r) => `${r.lengthBytes} bytes at ${r.offsetBytes}`).join(', ')})`;
}

/** A capture's partition table check: `gpt, 3 partitions ending at 33537536, boot partition`. */
function partitionTable(t: Task): string {
  const p = t.outcome?.partitionTable;
  if (!p) return '';
  if (p.scheme === 'none') return 'none';
  return `${p.scheme}, ${p.partitionCount} partitions ending at ${p.lastPartitionEndBytes}${p.hasBootPartition ? ', boot partition' : ', no boot partition'}`;
}

export const taskView: View<Task> = {
  columns: [
    { header: 'ID', value: (t) => t.id },
    { header: 'NODE', value: (t) => t.nodeName },
    { header: 'KIND', value: (t) => kindName(t.kind) },
    { header: 'STATE', value: (t) => stateName(t.state) },
    { header: 'TARGET', value: target },
    { header: 'PROGRESS', value: (t) => (finished(t.state) ? '' : describeProgress(t.progress)) },
    { header: 'CREATED', value: (t) => formatTime(t.createTime) },
  ],
  fields: (t) => [
    ['id', t.id],
    ['node', t.nodeName],
    ['node_id', t.nodeId],
    ['kind', kindName(t.kind)],
    ['target', target(t)],
    ['state', stateName(t.state)],
    ['attempt', String(t.attempt)],
    ['cancel_requested', t.cancelRequested ? 'yes' : 'no'],
    ['progress', describeProgress(t.progress)],
    ['sha256', t.outcome?.sha256 ?? ''],
    ['bytes_written', t.outcome?.bytesWritten ? String(t.outcome.bytesWritten) : ''],
    ['bytes_sent', t.outcome?.bytesSent ? String(t.outcome.bytesSent) : ''],
    ['bytes_read', t.outcome?.bytesRead ? String(t.outcome.bytesRead) : ''],
    ['unreadable', unreadable(t)],
    ['partition_table', partitionTable(t)],
    ['warnings', (t.outcome?.partitionTable?.warnings ?? []).join('; ')],
    ['error', t.error ? `${t.error.reason}: ${t.error.message}` : ''],
    ['create_time', formatTime(t.createTime)],
    ['start_time', formatTime(t.startTime)],
    ['end_time', formatTime(t.endTime)],
  ],
  json: (t) =>
    toProtoJson(t, {
      enums: { kind: (v) => taskKindToJSON(v as TaskKind), state: (v) => taskStateToJSON(v as TaskState) },
    }),
};

export interface TaskCreateOptions {
  node: string;
  image?: string;
  disk?: string;
  full?: boolean;
  receiver?: string;
  name?: string;
  os?: 'linux' | 'windows';
  compress?: boolean;
  bs?: string;
  count?: string;
  skip?: string;
  toLastPartition?: boolean;
  strict?: boolean;
  watch?: boolean;
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 };

/** `dd`'s sizes: `4096`, `512K`, `8M`, `1G` (binary units). UsageError otherwise. */
export function parseBlockSize(text: string): number {
  const m = /^([0-9]+)([KMG]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--bs ${text}: give bytes, or a number with K, M or G (e.g. 8M)`);
  return Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toUpperCase()] ?? 1);
}

export function parseBlocks(flag: string, text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`${flag} ${text}: give a number of blocks`);
  return Number(text);
}

const CAPTURE_FLAGS = [
  '--receiver',
  '--name',
  '--os',
  '--compress',
  '--bs',
  '--count',
  '--skip',
  '--to-last-partition',
  '--strict',
] as const;

/** The TaskSpec of `bmctl task create <kind>`; UsageError when a flag is missing or does not belong. */
export function taskSpec(kind: Kind, opts: TaskCreateOptions): Record<string, unknown> {
  const needs = (flag: string, value: unknown) => {
    if (!value) throw new UsageError(`${kind} needs ${flag}`);
  };
  const refuses = (flag: string, value: unknown) => {
    if (value) throw new UsageError(`${flag} does not go with ${kind}`);
  };
  if (kind !== 'capture') {
    const values = [
      opts.receiver,
      opts.name,
      opts.os,
      opts.compress,
      opts.bs,
      opts.count,
      opts.skip,
      opts.toLastPartition,
      opts.strict,
    ];
    for (const [i, value] of values.entries()) refuses(CAPTURE_FLAGS[i] as string, value);
  }
  if (kind === 'capture') {
    needs('--disk', opts.disk);
    if (opts.receiver && opts.name) throw new UsageError('--receiver and --name exclude each other');
    needs('--name IMAGE (into the image store) or --receiver HOST:PORT', opts.receiver || opts.name);
    if (!opts.name && (opts.compress || opts.os)) {
      throw new UsageError('--compress and --os go with --name only: a receiver gets the disk byte for byte');
    }
    refuses('--image', opts.image);
    refuses('--full', opts.full);
    return {
      capture: {
        disk: opts.disk,
        receiver: opts.receiver ?? '',
        image: opts.name ?? '',
        compress: opts.compress ?? false,
        blockSizeBytes: opts.bs === undefined ? 0 : parseBlockSize(opts.bs),
        count: parseBlocks('--count', opts.count),
        skip: parseBlocks('--skip', opts.skip),
        toLastPartition: opts.toLastPartition ?? false,
        strict: opts.strict ?? false,
      },
    };
  }
  if (kind === 'deploy') {
    needs('--image', opts.image);
    needs('--disk', opts.disk);
    refuses('--full', opts.full);
    return { deploy: { image: opts.image, disk: opts.disk } };
  }
  refuses('--image', opts.image);
  if (kind === 'wipe') {
    needs('--disk', opts.disk);
    return { wipe: { disk: opts.disk, full: opts.full ?? false } };
  }
  refuses('--disk', opts.disk);
  refuses('--full', opts.full);
  return { [kind]: {} };
}

/**
 * Prints a task's events as they come (WatchTask) until it finishes. People
 * get one line per event; `-o json` gets one TaskEvent per line. Rejects
 * (exit 1) unless the task succeeded.
 */
async function watch(ctx: CommandContext, services: AgentServices, id: string): Promise<void> {
  const printer = ctx.printer();
  const call = services.tasks.watchTask({ id }, services.metadata());
  let last: Task | undefined;
  let lastState: TaskState | undefined;
  for await (const event of call as AsyncIterable<TaskEvent>) {
    const time = formatTime(event.time).slice(11, 19);
    if (printer.format === 'json') {
      ctx.printer().report({
        text: () => '',
        json: () => toProtoJson({ ...event, task: event.task ? taskView.json(event.task) : undefined }),
      });
    }
    if (event.task) {
      last = event.task;
      if (printer.format === 'table' && event.task.state !== lastState) {
        const t = event.task;
        const extra =
          t.state === TaskState.TASK_STATE_RUNNING
            ? ` (attempt ${t.attempt})`
            : t.error
              ? `: ${t.error.reason}: ${t.error.message}`
              : t.outcome?.partitionTable
                ? `: ${t.outcome.bytesSent} bytes sent${t.outcome.bytesRead !== t.outcome.bytesSent ? ` (${t.outcome.bytesRead} read)` : ''}, sha256 ${t.outcome.sha256}${unreadable(t) ? `, unreadable: ${unreadable(t)}` : ''}${t.outcome.partitionTable.warnings.map((w) => `\n  warning: ${w}`).join('')}`
                : t.outcome?.sha256
                  ? `: sha256 ${t.outcome.sha256}`
                  : '';
        ctx.printer().report({
          text: () => `${time} ${kindName(t.kind)} ${t.id} ${stateName(t.state)}${extra}\n`,
          json: () => ({}),
        });
      }
      lastState = event.task.state;
    } else if (event.progress && printer.format === 'table') {
      ctx.printer().report({ text: () => `${time} ${describeProgress(event.progress)}\n`, json: () => ({}) });
    }
  }
  if (!last || last.state !== TaskState.TASK_STATE_SUCCEEDED) {
    const why = last?.error ? `${last.error.reason}: ${last.error.message}` : 'the watch ended early';
    throw new BmctlError(`task ${id} ${last ? stateName(last.state) : 'unknown'}: ${why}`, {
      exitCode: EXIT_FAILURE,
    });
  }
}

/** After a capture task succeeded: waits for its image to leave SAVING; exit 1 unless it is ACTIVE. */
async function watchImage(ctx: CommandContext, services: AgentServices, id: string): Promise<void> {
  for (;;) {
    const image = await services.call<object, Image>(services.images, 'getImage', { id });
    if (image.status === ImageStatus.IMAGE_STATUS_ACTIVE) {
      ctx.printer().report({
        text: () =>
          `image ${image.name} active: ${image.sizeBytes} bytes stored, ${image.virtualSizeBytes} on disk, sha256 ${image.sha256}\n`,
        json: () => ({}),
      });
      return;
    }
    if (image.status !== ImageStatus.IMAGE_STATUS_SAVING) {
      throw new BmctlError(
        `image ${image.name} ${imageStatusToJSON(image.status).replace('IMAGE_STATUS_', '').toLowerCase()}: ${image.statusReason}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, IMAGE_POLL_MS));
  }
}

export function registerTaskCommands(program: Command, ctx: CommandContext): void {
  const noun = program
    .command('task')
    .description('Work for nodes’ agents: deploy, wipe, inspect, reboot, power off, capture');

  const withServices = async <T>(work: (services: AgentServices) => Promise<T>): Promise<T> => {
    const services = new AgentServices(await ctx.connection());
    try {
      return await work(services);
    } finally {
      services.close();
    }
  };

  noun
    .command('create')
    .description(
      'Queue a task for a node’s agent, e.g. `bmctl task create deploy --node n1 --image ubuntu --disk /dev/sda --watch`',
    )
    .addArgument(new Argument('<kind>', 'deploy, wipe, inspect, reboot, poweroff or capture').choices(KINDS))
    .requiredOption('--node <node>', 'node id or name')
    .option('--image <image>', 'deploy: the image (id or name)')
    .option('--disk <path>', 'deploy, wipe, capture: the block device, e.g. /dev/sda')
    .option('--full', 'wipe: zero the whole disk, not just both ends')
    .option('--receiver <host:port>', 'capture: where to stream the disk (bmctl image receive, nc -l)')
    .option('--name <image>', 'capture: into this image of the store instead (created if it does not exist)')
    .addOption(
      new Option('--os <type>', 'capture --name: the new image’s OS (default linux)').choices([
        'linux',
        'windows',
      ]),
    )
    .option(
      '--compress',
      'capture --name: the agent sends the disk zstd-compressed; the image is stored as zstd',
    )
    .option('--bs <size>', 'capture: bytes per read, like dd (default 8M)')
    .option('--count <blocks>', 'capture: copy only this many blocks (default: to the end)')
    .option('--skip <blocks>', 'capture: skip this many blocks at the start')
    .option('--to-last-partition', 'capture: stop after the last partition, not at the end of the disk')
    .option('--strict', 'capture: fail on an unreadable block instead of sending zeros for it')
    .option('--watch', 'follow the task until it finishes (exit 1 unless it succeeds)')
    .action(async (kind: Kind, opts: TaskCreateOptions) => {
      const spec = taskSpec(kind, opts);
      await withServices(async (services) => {
        if (opts.name) await ensureImage(services, opts.name, opts.os);
        const task = await services.call<object, Task>(services.tasks, 'createTask', {
          node: opts.node,
          spec,
        });
        if (!opts.watch) {
          ctx.printer().one(task, taskView);
          return;
        }
        await watch(ctx, services, task.id);
        if (opts.name) await watchImage(ctx, services, task.spec?.capture?.image ?? opts.name);
      });
    });

  noun
    .command('list')
    .description('List tasks, newest last')
    .option('--node <node>', 'only this node’s')
    .addOption(new Option('--state <state>', 'only tasks in this state').choices(STATES))
    .action(async (opts: { node?: string; state?: (typeof STATES)[number] }) => {
      const state = opts.state
        ? TaskState[`TASK_STATE_${opts.state.toUpperCase()}` as keyof typeof TaskState]
        : 0;
      const tasks = await withServices((services) =>
        listAll(async (page) => {
          const res = await services.call<object, { tasks: Task[]; nextPageToken: string }>(
            services.tasks,
            'listTasks',
            {
              ...page,
              node: opts.node ?? '',
              state,
            },
          );
          return { items: res.tasks, nextPageToken: res.nextPageToken };
        }),
      );
      ctx.printer().many(tasks, taskView);
    });

  noun
    .command('show')
    .description('Show one task')
    .argument('<id>', 'task id')
    .action(async (id: string) => {
      ctx
        .printer()
        .one(await withServices((s) => s.call<object, Task>(s.tasks, 'getTask', { id })), taskView);
    });

  noun
    .command('cancel')
    .description('Cancel a task: at once when queued, through the agent when running')
    .argument('<id>', 'task id')
    .action(async (id: string) => {
      ctx
        .printer()
        .one(await withServices((s) => s.call<object, Task>(s.tasks, 'cancelTask', { id })), taskView);
    });

  noun
    .command('watch')
    .description('Follow a task live until it finishes (exit 1 unless it succeeds)')
    .argument('<id>', 'task id')
    .action(async (id: string) => {
      await withServices((services) => watch(ctx, services, id));
    });
}
