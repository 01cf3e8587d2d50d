#!/usr/bin/env node
import { runBmctl } from './cli.ts';

process.exitCode = await runBmctl(process.argv.slice(2), {
  env: process.env,
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  stderrIsTty: process.stderr.isTTY === true,
  stdoutIsTty: process.stdout.isTTY === true,
  stdoutColumns: process.stdout.columns,
  stderrColumns: process.stderr.columns,
});
