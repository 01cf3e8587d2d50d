/**
 * `make agent`: bundles the agent into one CommonJS file with esbuild, then
 * makes it a single executable with @yao-pkg/pkg's SEA builder on this
 * repository's own Node.js (`useLocalNode`: no download, works offline).
 * The result, build/ingot-agent, needs no Node.js on the node.
 *
 *   node agent/build.ts [--out build/ingot-agent]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const out = resolve(root, values.out ?? 'build/ingot-agent');
const bundle = resolve(root, 'build/agent/ingot-agent.cjs');

function gitRevision(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const version = `0.1.0+${gitRevision()}`;
mkdirSync(dirname(bundle), { recursive: true });
await build({
  entryPoints: [resolve(root, 'agent/src/main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  legalComments: 'none',
  define: { 'process.env.INGOT_AGENT_BUILD_VERSION': JSON.stringify(version) },
  logLevel: 'warning',
});

// The SEA builder works in a temporary directory: give it absolute paths, and build next to the
// target so that a running agent's executable is replaced atomically.
const require = createRequire(import.meta.url);
const sea = require('@yao-pkg/pkg/lib-es5/sea.js').default as (
  entry: string,
  opts: {
    targets: { platform: string; arch: string; nodeRange: string; output: string }[];
    useLocalNode: boolean;
    seaConfig: Record<string, unknown>;
  },
) => Promise<void>;
const partial = `${out}.partial`;
rmSync(partial, { force: true });
await sea(bundle, {
  targets: [
    {
      platform: 'linux',
      arch: process.arch,
      nodeRange: `node${process.versions.node.split('.')[0]}`,
      output: partial,
    },
  ],
  useLocalNode: true,
  seaConfig: {
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: false,
    // A small young generation: the agent's garbage is short-lived, and its memory should stay flat.
    execArgv: ['--max-semi-space-size=2'],
  },
});
renameSync(partial, out);
process.stdout.write(
  `built ${out} (ingot-agent ${version}, ${Math.round(statSync(out).size / 2 ** 20)} MiB)\n`,
);
