/**
 * Simulated BMCs for shell scripts (the demo, manual trials):
 *
 *   node tools/lab/bmc-lab-main.ts --count 3 [--out lab.json] [--ignore-soft-off]
 *
 * Starts the BMCs, writes one JSON object per BMC (name, address, username, password, dir) to
 * stdout and to `--out` (0600: it holds the passwords), then runs until SIGTERM or SIGINT and stops
 * every process it started, by PID.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startBmcLab } from './bmc-lab.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '3' },
    out: { type: 'string' },
    'ignore-soft-off': { type: 'boolean', default: false },
  },
});
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1 || count > 500) {
  process.stderr.write('bmc-lab: --count must be a whole number from 1 to 500\n');
  process.exit(2);
}
const lab = await startBmcLab({
  bmcs: Array.from({ length: count }, () => ({ ignoreSoftOff: values['ignore-soft-off'] })),
});
const described = lab.bmcs.map((b) => ({
  name: b.name,
  address: b.address,
  username: b.username,
  password: b.password,
  dir: b.dir,
}));
const text = `${described.map((d) => JSON.stringify(d)).join('\n')}\n`;
if (values.out) writeFileSync(values.out, text, { mode: 0o600 });
process.stdout.write(text);
process.stderr.write(`bmc-lab: ${count} BMC(s) up in ${lab.dir}; SIGTERM or Ctrl-C stops them\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await lab.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
// Keep running until a signal comes.
setInterval(() => undefined, 1 << 30);
