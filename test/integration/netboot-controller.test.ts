/**
 * The controller process as operators run it, with managed netboot: it writes dnsmasq's
 * configuration, starts dnsmasq (here inside a network namespace), serves the iPXE chain script
 * over its HTTP listener, answers no DHCP request from an unknown MAC, and stops dnsmasq (by PID)
 * when it stops. A bad netboot setting stops the start with a message that names it.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsLab } from '../../tools/lab/netns-lab.ts';
import { ProcessTracker } from '../support/process.ts';

/** What the chain script asks iPXE to do: its own `${mac:hexhyp}` setting, expanded by iPXE. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: an iPXE setting
const CHAIN_LINE = 'chain ipxe/${mac:hexhyp}.ipxe';

const SLOW_MS = 600_000;

describe('controller with managed netboot', () => {
  const tracker = new ProcessTracker();
  let lab: NetnsLab;
  let serverNs: string;
  let clientNs: string;
  let work: string;

  beforeAll(async () => {
    lab = await NetnsLab.create('nc');
    serverNs = await lab.namespace('srv');
    clientNs = await lab.namespace('cli');
    await lab.veth(
      { ns: serverNs, name: 'eth0', cidr: '10.78.0.1/24' },
      { ns: clientNs, name: 'eth0', mac: '52:54:00:78:00:99' },
    );
    work = mkdtempSync(join(tmpdir(), 'ingot-netboot-ctl-'));
    chmodSync(work, 0o755);
  });

  afterAll(async () => {
    await tracker.killAll();
    await lab?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function configFile(netboot: Record<string, unknown>): string {
    const file = join(work, `config-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        dataDir: join(work, 'data'),
        grpcListen: '127.0.0.1:0',
        httpListen: '127.0.0.1:0',
        httpAdvertiseUrl: 'http://10.78.0.1:7780',
        netboot,
      }),
    );
    return file;
  }

  it(
    'starts dnsmasq, serves the chain script, gives strangers nothing and stops dnsmasq with itself',
    async () => {
      const dir = join(work, 'netboot');
      const controller = tracker.spawn([
        '--config',
        configFile({ mode: 'managed', dir, interface: 'eth0', netns: serverNs, subnet: '10.78.0.0/24' }),
      ]);
      const serving = await controller.serving(SLOW_MS);
      const ready = await controller.waitForLog('netboot ready');
      expect(ready).toMatchObject({ mode: 'managed', dir });
      const pid = Number(ready.pid);
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('dnsmasq');

      const conf = readFileSync(join(dir, 'dnsmasq.conf'), 'utf8');
      expect(conf).toContain('dhcp-boot=tag:ipxe,http://10.78.0.1:7780/netboot/boot.ipxe');
      const chain = await fetch(`http://${serving.http}/netboot/boot.ipxe`);
      expect(chain.status).toBe(200);
      expect(await chain.text()).toContain(CHAIN_LINE);
      expect((await fetch(`http://${serving.http}/netboot/ipxe/52-54-00-78-00-99.ipxe`)).status).toBe(404);

      const dhcp = await lab.exec(clientNs, [
        'busybox',
        'udhcpc',
        '-i',
        'eth0',
        '-n',
        '-q',
        '-f',
        '-t',
        '2',
        '-T',
        '1',
        '-s',
        '/bin/true',
      ]);
      expect(dhcp.stderr).toContain('no lease');

      expect(await controller.terminate()).toEqual({ code: 0, signal: null });
      // The child is gone (not merely a zombie): /proc no longer has it.
      expect(existsSync(`/proc/${pid}`)).toBe(false);
    },
    SLOW_MS,
  );

  it(
    'refuses to start with netboot settings it cannot use, and says which',
    async () => {
      const controller = tracker.spawn([
        '--config',
        configFile({ mode: 'managed', dir: join(work, 'bad'), subnet: '10/8' }),
      ]);
      const exit = await controller.waitForExit(SLOW_MS);
      expect(exit.code).toBe(1);
      const fatal = controller.logs().find((l) => l.level === 'fatal');
      expect(JSON.stringify(fatal)).toContain('netboot.interface is required in managed mode');
      expect(JSON.stringify(fatal)).toContain('netboot.subnet must be like 10.0.0.0/24');
    },
    SLOW_MS,
  );
});
