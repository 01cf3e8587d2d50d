import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BootEntry,
  dhcpHostName,
  dnsmasqConf,
  eventScript,
  hostEntry,
  inSubnet,
  ipxeScript,
  netbootPaths,
  pxelinuxConfig,
  writeFileAtomic,
} from '../../controller/src/drivers/netboot/boot-files.ts';
import { parseEventLine } from '../../controller/src/drivers/netboot/dhcp-events.ts';

const entry: BootEntry = {
  nodeId: '0190b7d2-0000-7000-8000-000000000001',
  nodeName: 'rack1_node.7',
  mac: '52:54:00:12:34:56',
  ip: '10.0.0.17',
  agentToken: 'abc.DEF-123_456~xyz',
};
const kernel = {
  controllerGrpc: '10.0.0.2:7700',
  controllerUrl: 'http://10.0.0.2:7780',
  extra: 'console=ttyS0',
};
const dir = mkdtempSync(join(tmpdir(), 'ingot-boot-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('netboot files', () => {
  it('host entries are MAC,IP,name with no tags (dnsmasq 2.90 crashes on SIGHUP with served tagged entries)', () => {
    expect(hostEntry(entry)).toBe('52:54:00:12:34:56,10.0.0.17,rack1-node-7\n');
    expect(hostEntry(entry)).not.toMatch(/set:|tag:/);
    expect(dhcpHostName('--')).toBe('node');
  });

  it('kernel arguments: quiet (the token is on them), the controller addresses, the node and its token, then the operator’s extras', () => {
    const args =
      'quiet ingot.controller=10.0.0.2:7700 ingot.http=http://10.0.0.2:7780 ' +
      `ingot.node=${entry.nodeId} ingot.token=${entry.agentToken} console=ttyS0`;
    expect(ipxeScript(entry, kernel, { kernel: 'http://k/vmlinuz', initrd: 'http://k/initrd.img' })).toBe(
      '#!ipxe\n' +
        '# Ingot boot configuration for node rack1_node.7 (52:54:00:12:34:56), written by the controller.\n' +
        `kernel http://k/vmlinuz initrd=initrd.img ${args}\n` +
        'initrd --name initrd.img http://k/initrd.img\nboot\n',
    );
    expect(pxelinuxConfig(entry, kernel, { kernel: 'b/vmlinuz', initrd: 'b/initrd.img' })).toContain(
      `  KERNEL b/vmlinuz\n  INITRD b/initrd.img\n  APPEND ${args}\n`,
    );
  });

  it('configures dnsmasq for known MACs only, with per-node files instead of tags', () => {
    const conf = dnsmasqConf({
      mode: 'managed',
      paths: netbootPaths('/srv/nb'),
      interface: 'ens3',
      subnet: '10.0.0.0/22',
      leaseTime: '1h',
      pxeBootFile: 'undionly.kpxe',
      chainUrl: 'http://10.0.0.2:7780/netboot/boot.ipxe',
      user: 'nobody',
      extraOptions: ['log-dhcp'],
    });
    for (const line of [
      'port=0',
      'interface=ens3',
      'dhcp-range=10.0.0.0,static,255.255.252.0,1h',
      'dhcp-hostsdir=/srv/nb/hosts',
      'dhcp-ignore=tag:!known',
      'dhcp-script=/srv/nb/dhcp-event.sh',
      'dhcp-boot=tag:!ipxe,undionly.kpxe',
      'dhcp-boot=tag:ipxe,http://10.0.0.2:7780/netboot/boot.ipxe',
      'no-ping',
      'tftp-root=/srv/nb/tftp',
      'log-dhcp',
    ]) {
      expect(conf.split('\n')).toContain(line);
    }
  });

  it('the event script appends one line per event, quoting its path', () => {
    expect(eventScript("/srv/it's/events.log")).toContain(`>> '/srv/it'\\''s/events.log'`);
  });

  it('reads the lines dnsmasq’s script writes', () => {
    expect(parseEventLine('add 52:54:00:12:34:56 10.0.0.17 node')).toEqual({
      kind: 'lease',
      action: 'add',
      mac: '52:54:00:12:34:56',
      ip: '10.0.0.17',
    });
    expect(parseEventLine('tftp 1234 10.0.0.17 /srv/nb/tftp/pxelinux.cfg/01-52-54-00-12-34-56')).toEqual({
      kind: 'tftp',
      bytes: 1234,
      ip: '10.0.0.17',
      file: '/srv/nb/tftp/pxelinux.cfg/01-52-54-00-12-34-56',
    });
    expect(parseEventLine('init')).toBeUndefined();
    expect(parseEventLine('add not-a-mac 10.0.0.1')).toBeUndefined();
  });

  it('knows which addresses are in the service network', () => {
    expect(inSubnet('10.0.3.255', '10.0.0.0/22')).toBe(true);
    expect(inSubnet('10.0.4.0', '10.0.0.0/22')).toBe(false);
    expect(inSubnet('fe80::1', '10.0.0.0/22')).toBe(false);
  });

  it('writes atomically, world-readable, leaving no temporary file behind', () => {
    const path = join(dir, 'entry');
    writeFileAtomic(path, 'one\n');
    writeFileAtomic(path, 'two\n');
    expect(readFileSync(path, 'utf8')).toBe('two\n');
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir)).toEqual(['entry']);
  });
});
