/**
 * A node behind a shaped link, for bench/capture: a network namespace joined to the host's by a veth
 * pair on a /30, with a token bucket (`tc … tbf`) on the node's end, so that what the node sends — the
 * capture's bytes, whoever sends them — leaves at the link's rate, as from a node to its controller
 * over a real network. Only the namespace and the veth pair are touched: the host's own interfaces
 * never get a qdisc. The namespace comes from NetnsLab (listed for the test harness's sweep, deleted
 * when the process exits), and deleting it deletes the veth pair, host end included.
 */
import { randomInt } from 'node:crypto';
import { execa } from 'execa';
import { NetnsLab } from '../../tools/lab/netns-lab.ts';

export interface ShapedLink {
  /** The node's namespace: run senders under `ip netns exec <ns>`. */
  ns: string;
  /** The host end's address, where receivers listen. */
  hostAddress: string;
  /** Deletes the namespace and with it the veth pair. Safe to call twice. */
  destroy(): Promise<void>;
}

/** `rate` as tc reads it, e.g. `1gbit`. */
export async function createShapedLink(rate: string): Promise<ShapedLink> {
  const lab = await NetnsLab.create('cap');
  try {
    const ns = await lab.namespace('node');
    const { hostAddress, nodeAddress } = await freeSlash30();
    // Named after the lab's unique id, so that parallel runs and leftovers never collide in the host.
    const hostEnd = `${lab.id}h`;
    // The peer goes straight into this process's namespace (the host's): it exists only as long as `ns`.
    await run('ip', [
      '-n',
      ns,
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      hostEnd,
      'netns',
      String(process.pid),
    ]);
    await run('ip', ['-n', ns, 'addr', 'add', `${nodeAddress}/30`, 'dev', 'eth0']);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['addr', 'add', `${hostAddress}/30`, 'dev', hostEnd]);
    await run('ip', ['link', 'set', hostEnd, 'up']);
    // burst 256 KiB holds a few 64 KiB GSO segments (veth offloads); latency bounds the queue at 50 ms.
    await run('tc', [
      '-n',
      ns,
      'qdisc',
      'add',
      'dev',
      'eth0',
      'root',
      'tbf',
      'rate',
      rate,
      'burst',
      '256kb',
      'latency',
      '50ms',
    ]);
    return { ns, hostAddress, destroy: () => lab.destroy() };
  } catch (err) {
    await lab.destroy();
    throw err;
  }
}

/** Both addresses of a 10.255.x.y/30 that no interface of the host uses yet. */
async function freeSlash30(): Promise<{ hostAddress: string; nodeAddress: string }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const prefix = `10.255.${randomInt(256)}`;
    const base = randomInt(64) * 4;
    const inUse = await execa('ip', ['-o', 'addr', 'show', 'to', `${prefix}.${base}/30`], {
      stdin: 'ignore',
    });
    if (String(inUse.stdout).trim() === '') {
      return { hostAddress: `${prefix}.${base + 1}`, nodeAddress: `${prefix}.${base + 2}` };
    }
  }
  throw new Error('no free /30 in 10.255.0.0/16 after 20 tries; remove leftover interfaces and retry');
}

async function run(bin: string, args: string[]): Promise<void> {
  const result = await execa(bin, args, { reject: false, stdin: 'ignore' });
  if (result.exitCode !== 0) throw new Error(`${bin} ${args.join(' ')}: ${String(result.stderr).trim()}`);
}
