import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import type { Logger } from '../log.ts';
import type { TaskContext, TaskOutcomeValue } from './context.ts';
import { Reason, TaskFailure } from './task-failure.ts';

/**
 * How the agent reboots or powers off its machine: a command (argv, no
 * shell), or the kernel's magic SysRq (`b` reboot, `o` power off) after a
 * sync, which needs no userland — the bootstrap image's way. Outside the
 * bootstrap image neither is set, so that an agent run by hand can never
 * reboot the machine it runs on by accident.
 */
export type PowerAction = { command: string[] } | { sysrq: 'b' | 'o' } | undefined;

/**
 * Reports success first and acts once the controller has recorded it, so
 * that the outcome is not lost with the machine going down.
 */
export async function power(
  kind: 'reboot' | 'poweroff',
  action: PowerAction,
  ctx: TaskContext,
): Promise<TaskOutcomeValue> {
  if (!action) {
    throw new TaskFailure(
      Reason.POWER_COMMAND_UNSET,
      `this agent has no ${kind} command (start it with --${kind}-command, or boot it from the bootstrap image)`,
    );
  }
  ctx.progress.update(kind === 'reboot' ? 'rebooting' : 'powering off');
  return { afterAck: () => act(kind, action, ctx.log) };
}

async function act(kind: string, action: NonNullable<PowerAction>, log: Logger): Promise<void> {
  log.info({ kind }, `${kind} now`);
  if ('sysrq' in action) {
    await run(['sync'], log).catch(() => {});
    await writeFile('/proc/sysrq-trigger', action.sysrq);
    return;
  }
  await run(action.command, log);
}

function run(argv: string[], log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    const [bin, ...args] = argv as [string, ...string[]];
    const child = spawn(bin, args, { stdio: 'ignore' });
    child.on('error', (err) => {
      log.error({ err, command: argv }, 'power command failed to start');
      reject(new TaskFailure(Reason.POWER_COMMAND_FAILED, `${bin}: ${err.message}`));
    });
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else reject(new TaskFailure(Reason.POWER_COMMAND_FAILED, `${bin} exited with ${code}`));
    });
  });
}
