#!/usr/bin/env node
/** ingot-controller: composition root only. */
import * as grpc from '@grpc/grpc-js';
import { ConfigError, loadConfig } from './config/config.ts';
import { startController } from './controller.ts';
import { createLogger } from './log/logger.ts';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`ingot-controller: ${err.message}\n`);
  process.exit(2);
}
const log = createLogger(config.logLevel);
// grpc-js writes plain-text lines to stderr by default; failures reach the JSON log through our own handlers.
grpc.setLogVerbosity(grpc.logVerbosity.NONE);
try {
  const controller = await startController(config, log);
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      controller.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
} catch (err) {
  log.fatal({ err }, 'controller failed to start');
  process.exit(1);
}
