#!/usr/bin/env node
/**
 * ingot-agent: runs on a node (in the bootstrap Linux, or by hand for
 * tests and benchmarks), keeps one stream to the controller and executes
 * the tasks it sends. Composition root only.
 *
 *   ingot-agent --controller HOST:PORT --token TOKEN [--disk-allow /dev/sdX]…
 *
 * In the bootstrap image the settings come from the kernel command line
 * (`ingot.controller=HOST:PORT ingot.token=TOKEN`).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { collectInventory, wholeDiskPaths } from './disk/inventory.ts';
import { createLogger, type Level } from './log.ts';
import type { PowerAction } from './tasks/reboot.ts';
import { TaskRunner } from './tasks/runner.ts';
import { AgentRejectedError, AgentSession } from './transport/session.ts';
import { AGENT_VERSION } from './version.ts';

const USAGE = `usage: ingot-agent --controller HOST:PORT (--token TOKEN | --token-file FILE) [options]

  --controller HOST:PORT     the controller's gRPC address (kernel command line: ingot.controller=)
  --token TOKEN              the node's agent token (bmctl node agent-token NODE); also
  --token-file FILE          INGOT_AGENT_TOKEN or ingot.token= on the kernel command line
  --disk-allow PATH          a block device tasks may write (repeat); default: the machine's whole disks
  --mac MAC                  report this MAC instead of the NICs' (repeat; for labs and tests)
  --reboot-command CMD       how to reboot, e.g. "systemctl reboot" (split on spaces, no shell)
  --poweroff-command CMD     how to power off; the bootstrap image uses the kernel's SysRq for both
  --reconnect-max-ms MS      longest pause between reconnects (default 10000)
  --log-level LEVEL          debug, info, warn, error (default info)
  --version                  print the version
`;

/** Exit status when the controller refuses the agent (bad token, wrong machine). */
const EXIT_REJECTED = 3;
const EXIT_USAGE = 2;

function fail(message: string): never {
  process.stderr.write(`ingot-agent: ${message}\n${USAGE}`);
  process.exit(EXIT_USAGE);
}

/** `ingot.controller=…`, `ingot.token=…` from the kernel command line, if any. */
function kernelArgs(): Record<string, string> {
  let line = '';
  try {
    line = readFileSync('/proc/cmdline', 'utf8');
  } catch {
    return {};
  }
  const found: Record<string, string> = {};
  for (const word of line.trim().split(/\s+/)) {
    const match = /^ingot\.([a-z_]+)=(.*)$/.exec(word);
    if (match?.[1] && match[2] !== undefined) found[match[1]] = match[2];
  }
  return found;
}

async function main(): Promise<void> {
  const { values } = (() => {
    try {
      return parseArgs({
        options: {
          controller: { type: 'string' },
          token: { type: 'string' },
          'token-file': { type: 'string' },
          'disk-allow': { type: 'string', multiple: true },
          mac: { type: 'string', multiple: true },
          'reboot-command': { type: 'string' },
          'poweroff-command': { type: 'string' },
          'reconnect-max-ms': { type: 'string' },
          'log-level': { type: 'string' },
          version: { type: 'boolean' },
          help: { type: 'boolean' },
        },
        strict: true,
      });
    } catch (err) {
      fail((err as Error).message);
    }
  })();

  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (values.version) {
    process.stdout.write(`ingot-agent ${AGENT_VERSION}\n`);
    process.exit(0);
  }

  const kernel = values.controller ? {} : kernelArgs();
  const controller = values.controller ?? kernel.controller;
  if (!controller || !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(controller)) {
    fail('--controller HOST:PORT is required');
  }
  let token = values.token ?? process.env.INGOT_AGENT_TOKEN ?? kernel.token;
  if (values['token-file']) {
    try {
      token = readFileSync(values['token-file'], 'utf8').trim();
    } catch (err) {
      fail(`cannot read the token file: ${(err as Error).message}`);
    }
  }
  if (!token) fail('an agent token is required (--token, --token-file or INGOT_AGENT_TOKEN)');
  const level = (values['log-level'] ?? 'info') as Level;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) fail(`unknown log level ${level}`);
  const reconnectMaxMs = Number(values['reconnect-max-ms'] ?? 10_000);
  if (!Number.isInteger(reconnectMaxMs) || reconnectMaxMs < 100)
    fail('--reconnect-max-ms must be at least 100');

  /** From the kernel command line, the agent is in the bootstrap image and may reboot its machine by SysRq. */
  const bootstrap = kernel.controller !== undefined;
  const command = (text: string | undefined): PowerAction =>
    text ? { command: text.trim().split(/\s+/) } : undefined;
  const powerActions = {
    reboot: command(values['reboot-command']) ?? (bootstrap ? { sysrq: 'b' as const } : undefined),
    poweroff: command(values['poweroff-command']) ?? (bootstrap ? { sysrq: 'o' as const } : undefined),
  };

  const log = createLogger(level);
  const allow = await Promise.all((values['disk-allow'] ?? []).map((p) => realpath(p).catch(() => p)));
  const runner = new TaskRunner({
    disks: { allow, inventoryDisks: wholeDiskPaths },
    power: powerActions,
    log,
  });
  const inventory = () => collectInventory(values['disk-allow'] ?? []);
  const macs =
    values.mac && values.mac.length > 0
      ? values.mac.map((m) => m.toLowerCase())
      : (await inventory()).nics.map((n) => n.mac);
  const session = new AgentSession({
    controller,
    token,
    macs,
    instanceId: randomUUID(),
    runner,
    inventory,
    log,
    reconnectMaxMs,
  });

  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      log.info({ signal }, 'stopping');
      runner.abortAll();
      stop.abort();
    });
  }
  log.info(
    { version: AGENT_VERSION, controller, macs, diskAllow: allow, pid: process.pid },
    'agent starting',
  );
  try {
    await session.run(stop.signal);
    // Tasks aborted by the signal still clean up (a half-written disk is wiped) before the agent goes.
    await runner.settled();
    process.exit(0);
  } catch (err) {
    if (err instanceof AgentRejectedError) {
      log.error({ code: err.code, reason: err.message }, 'the controller refused this agent');
      process.exit(EXIT_REJECTED);
    }
    log.error({ err }, 'agent failed');
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ingot-agent: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
