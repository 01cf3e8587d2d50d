import { type Command, Option } from 'commander';
import {
  type Capture,
  CaptureState,
  CreateCaptureRequest,
  captureStateToJSON,
} from '../../../build/gen/ingot/v1/capture.ts';
import { ImageVisibility, OsType } from '../../../build/gen/ingot/v1/image.ts';
import type { CommandContext } from '../context.ts';
import { BmctlError, EXIT_FAILURE, UsageError } from '../errors.ts';
import { formatTime, renderTable, toProtoJson, type View } from '../output.ts';
import { describeProgress, formatDuration, LiveLines, type LiveOutput, renderBar } from '../progress.ts';
import { formatBytes } from '../services.ts';
import { parseBlockSize, parseBlocks } from './task.ts';

const OS_TYPES = { linux: OsType.OS_TYPE_LINUX, windows: OsType.OS_TYPE_WINDOWS };
const VISIBILITIES = {
  project: ImageVisibility.IMAGE_VISIBILITY_PROJECT,
  public: ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
};
const BAR_WIDTH = 20;

export const captureStateName = (s: CaptureState) =>
  captureStateToJSON(s).replace('CAPTURE_STATE_', '').toLowerCase();

/** Where the bytes go: the image's name, or the operator's receiver. */
const destination = (c: Capture) => c.imageName || c.spec?.receiver || '';

export const captureView: View<Capture> = {
  columns: [
    { header: 'ID', value: (c) => c.id },
    { header: 'NODE', value: (c) => c.nodeName },
    { header: 'STATE', value: (c) => captureStateName(c.state) },
    { header: 'STEP', value: (c) => c.step },
    { header: 'DESTINATION', value: destination },
  ],
  fields: (c) => [
    ['id', c.id],
    ['node', c.nodeName],
    ['state', captureStateName(c.state)],
    ['step', c.step],
    ['reason', c.reason],
    ['image', c.imageName],
    ['receiver', c.imageName ? '' : (c.spec?.receiver ?? '')],
    ['disk', c.spec?.disk ?? ''],
    ['compress', c.spec?.compress ? 'yes' : 'no'],
    ['power_off', c.powerOff ? 'yes' : 'no'],
    ['bytes_read', c.outcome ? formatBytes(c.outcome.bytesRead || c.outcome.bytesSent) : ''],
    ['bytes_sent', c.outcome ? formatBytes(c.outcome.bytesSent) : ''],
    ['sha256', c.outcome?.sha256 ?? ''],
    [
      'unreadable',
      (c.outcome?.unreadable ?? []).map((r) => `${r.lengthBytes} bytes at ${r.offsetBytes}`).join(', '),
    ],
    ['partition_warnings', (c.outcome?.partitionTable?.warnings ?? []).join('; ')],
    ['create_time', formatTime(c.createTime)],
  ],
  json: (c) => toProtoJson(c, { enums: { state: (v) => captureStateToJSON(v as CaptureState) } }),
};

/** The step timeline after `capture show`'s fields. */
function renderSteps(c: Capture, nowMs: number): string {
  if (c.steps.length === 0) return '';
  return renderTable(
    ['STEP', 'STATE', 'START', 'DURATION', 'MESSAGE'],
    c.steps.map((s) => [
      s.name,
      s.state,
      formatTime(s.startTime),
      s.startTime ? formatDuration((s.endTime?.getTime() ?? nowMs) - s.startTime.getTime()) : '',
      s.message,
    ]),
  );
}

/** One live line: `node3  running  capturing  [####....] capturing 1.0 GiB / 2.0 GiB (50%) …`. */
function describeCaptureLine(c: Capture, bar: boolean): { text: string; milestone: string } {
  const detail: string[] = [captureStateName(c.state), c.step];
  if (c.state === CaptureState.CAPTURE_STATE_FAILED) detail.push(c.reason);
  const p = c.progress;
  if (c.state === CaptureState.CAPTURE_STATE_RUNNING && p && (p.phase !== '' || p.bytesTotal > 0)) {
    if (bar && p.bytesTotal > 0) detail.push(renderBar(p.bytesDone / p.bytesTotal, BAR_WIDTH));
    detail.push(describeProgress(p));
  }
  return {
    text: `${c.nodeName}  ${detail.filter((d) => d !== '').join('  ')}`,
    milestone: [c.state, c.step, p?.phase ?? ''].join('|'),
  };
}

interface CaptureOptions {
  name?: string;
  os?: keyof typeof OS_TYPES;
  project?: string;
  visibility?: keyof typeof VISIBILITIES;
  disk?: string;
  bs?: string;
  count?: string;
  skip?: string;
  toLastPartition?: boolean;
  strict?: boolean;
  receiver?: string;
  compress?: boolean;
  powerOff?: boolean;
  wait: boolean;
}

/** `bmctl image capture <node> …` → CreateCapture; UsageError for flags that do not go together. */
export function captureRequest(node: string, opts: CaptureOptions): CreateCaptureRequest {
  if (!opts.name && !opts.receiver) {
    throw new UsageError('give --name IMAGE (capture into the image store) or --receiver HOST:PORT');
  }
  if (opts.name && opts.receiver)
    throw new UsageError('--name and --receiver are exclusive: one destination');
  if (opts.compress && !opts.name) throw new UsageError('--compress goes with --name (the image store) only');
  if ((opts.project || opts.visibility) && !opts.name) {
    throw new UsageError('--project and --visibility go with --name (the image store) only');
  }
  if (opts.count && opts.toLastPartition)
    throw new UsageError('--count and --to-last-partition are exclusive');
  return CreateCaptureRequest.fromPartial({
    node,
    image: opts.name
      ? {
          name: opts.name,
          osType: OS_TYPES[opts.os ?? 'linux'],
          // A project's image stays the project's unless said otherwise; an operators' image is public.
          visibility: VISIBILITIES[opts.visibility ?? (opts.project ? 'project' : 'public')],
        }
      : undefined,
    project: opts.project ?? '',
    spec: {
      disk: opts.disk ?? '',
      receiver: opts.receiver ?? '',
      blockSizeBytes: opts.bs === undefined ? 0 : parseBlockSize(opts.bs),
      count: parseBlocks('--count', opts.count),
      skip: parseBlocks('--skip', opts.skip),
      toLastPartition: opts.toLastPartition ?? false,
      strict: opts.strict ?? false,
      compress: opts.compress ?? false,
    },
    powerOff: opts.powerOff ?? false,
  });
}

export function registerCaptureCommands(images: Command, program: Command, ctx: CommandContext): void {
  const liveDisplay = (): LiveLines | undefined => {
    const out: LiveOutput | undefined =
      ctx.printer().format === 'table' ? ctx.stdout : ctx.progress.tty ? ctx.progress : undefined;
    return out && new LiveLines({ ...out, now: () => ctx.now() });
  };

  /** Follows a capture until it ends; prints it; exit 1 unless it succeeded. */
  const follow = async (id: string): Promise<void> => {
    const inventory = await ctx.inventory();
    const display = liveDisplay();
    let last: Capture | undefined;
    for await (const capture of inventory.stream('watchCapture', { id })) {
      last = capture;
      if (display) {
        const { text, milestone } = describeCaptureLine(capture, display.tty);
        display.set(id, text, milestone);
      }
    }
    if (!last) throw new BmctlError(`the watch of capture ${id} ended before the controller sent it`);
    show(last);
    if (last.state === CaptureState.CAPTURE_STATE_RUNNING) {
      throw new BmctlError(
        `the watch of capture ${id} ended while it was running (step ${last.step}); follow it again with bmctl capture watch ${id}`,
        { exitCode: EXIT_FAILURE },
      );
    }
    if (last.state !== CaptureState.CAPTURE_STATE_SUCCEEDED) {
      throw new BmctlError(
        `capture ${id} of node ${last.nodeName} failed in step ${last.step}: ${last.reason}`,
        {
          exitCode: EXIT_FAILURE,
        },
      );
    }
  };

  const show = (capture: Capture) => {
    const printer = ctx.printer();
    printer.one(capture, captureView);
    if (printer.format === 'table') ctx.stdout.write(renderSteps(capture, ctx.now()));
  };

  images
    .command('capture')
    .description(
      'Capture a node’s disk into an image (or to your own receiver), like `dd if=/dev/sda | nc`: the node is ' +
        'netbooted on the service network, its agent streams the disk (read-only) with live progress, and the ' +
        'node is put back as it was (its network, its power). Waits until the capture ends unless --no-wait.',
    )
    .argument('<node>', 'node id or name')
    .option('--name <image>', 'the new image’s name (in the image store)')
    .addOption(new Option('--os <os>', 'the image’s OS').choices(Object.keys(OS_TYPES)).default('linux'))
    .option(
      '--project <project>',
      'the project that owns the image (only it sees it); without it an operators’ image, which every project sees',
    )
    .addOption(
      new Option('--visibility <visibility>', 'project or public (default: project with --project)').choices(
        Object.keys(VISIBILITIES),
      ),
    )
    .option('--disk <path>', 'the disk to capture (default: the node’s root disk)')
    .option('--bs <size>', 'bytes per read, like dd (default 8M)')
    .option('--count <blocks>', 'copy only this many blocks (default: to the end)')
    .option('--skip <blocks>', 'skip this many blocks at the start')
    .option('--to-last-partition', 'stop after the last partition instead of copying empty disk')
    .option('--strict', 'fail on an unreadable block instead of sending zeros for it')
    .option('--receiver <host:port>', 'stream to your own receiver instead (bmctl image receive, nc -l)')
    .option('--compress', 'zstd between the agent and the image store (stored as a zstd image)')
    .option('--power-off', 'power the node off afterwards instead of restoring its power')
    .option('--no-wait', 'print the capture and return at once (follow it with `bmctl capture watch ID`)')
    .action(async (node: string, opts: CaptureOptions) => {
      const inventory = await ctx.inventory();
      const capture = await inventory.call('createCapture', captureRequest(node, opts));
      if (!opts.wait) {
        show(capture);
        return;
      }
      await follow(capture.id);
    });

  const noun = program
    .command('capture')
    .description('Captures of nodes’ disks (bmctl image capture starts one)');
  noun
    .command('show')
    .description('A capture: its state, destination, digest and step timeline')
    .argument('<id>', 'capture id')
    .action(async (id: string) => {
      show(await (await ctx.inventory()).call('getCapture', { id }));
    });
  noun
    .command('watch')
    .description('Follow a capture live until it ends (exit 1 unless it succeeded)')
    .argument('<id>', 'capture id')
    .action(follow);
}
