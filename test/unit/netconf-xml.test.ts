import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  describePort,
  isOnVlan,
  parsePortView,
  portEditConfig,
} from '../../controller/src/drivers/network/juniper/junos-config.ts';
import { rpcErrors } from '../../controller/src/drivers/network/juniper/session.ts';
import {
  child,
  descend,
  escapeXml,
  parseXml,
  serializeXml,
  textOf,
  XmlSyntaxError,
} from '../../controller/src/drivers/network/juniper/xml.ts';

describe('NETCONF XML', () => {
  it('reads a Junos hello with its leading comments, namespaces and padding', () => {
    const hello = parseXml(
      '<!-- No zombies were killed during the creation of this user interface -->\n' +
        '<!-- user netops, class j-super-user -->\n' +
        '<?xml version="1.0"?><nc:hello xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0">\n' +
        '<nc:capabilities><nc:capability>urn:ietf:params:netconf:base:1.0</nc:capability></nc:capabilities>\n' +
        '<nc:session-id>4711</nc:session-id></nc:hello>\n',
    );
    expect(hello.name).toBe('hello');
    expect(textOf(descend(hello, 'capabilities', 'capability'))).toBe('urn:ietf:params:netconf:base:1.0');
    expect(textOf(child(hello, 'session-id'))).toBe('4711');
  });

  it('decodes entities and CDATA and keeps attributes', () => {
    const el = parseXml(`<a x="1 &amp; 2" y='&#x3c;'>&lt;b&gt; &#169; <![CDATA[<raw> & stuff]]><c/></a>`);
    expect(el.attrs).toEqual({ x: '1 & 2', y: '<' });
    expect(textOf(el)).toBe('<b> © <raw> & stuff');
  });

  it.each([
    ['a DOCTYPE (no entity expansion games)', '<!DOCTYPE x [<!ENTITY a "b">]><x/>'],
    ['a mismatched end tag', '<a><b></a></b>'],
    ['an unclosed element', '<a><b/>'],
    ['text outside the root', 'junk<a/>'],
    ['two roots', '<a/><b/>'],
    ['an unknown entity', '<a>&nbsp;</a>'],
    ['nothing', '  '],
  ])('refuses %s', (_what, text) => {
    expect(() => parseXml(text)).toThrow(XmlSyntaxError);
  });

  it('round-trips escaped text and attributes', () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => [...s].every((c) => c >= ' ')),
        (s) => {
          const el = parseXml(`<a v="${escapeXml(s)}">${escapeXml(s)}</a>`);
          expect(el.attrs.v).toBe(s);
          expect(el.children.join('')).toBe(s);
          expect(parseXml(serializeXml(el))).toEqual(el);
        },
      ),
    );
  });

  it('reads every rpc-error of a Junos commit failure, with path, daemon padding and bad-element', () => {
    const reply = parseXml(`<rpc-reply xmlns:junos="http://xml.juniper.net/junos/21.4R3/junos" message-id="5">
<rpc-error>
<error-type>protocol</error-type>
<error-tag>operation-failed</error-tag>
<error-severity>error</error-severity>
<error-path>
[edit interfaces ge-0/0/3 unit 0 family ethernet-switching]
</error-path>
<error-message>
No vlan matches vlan tag 999 for interface ge-0/0/3.0
</error-message>
</rpc-error>
<rpc-error>
<error-type>protocol</error-type>
<error-tag>operation-failed</error-tag>
<error-severity>error</error-severity>
<error-message>
syntax error
</error-message>
<error-info>
<bad-element>port-mode</bad-element>
</error-info>
</rpc-error>
<rpc-error><error-severity>warning</error-severity><error-message>statement has no contents; ignored</error-message></rpc-error>
</rpc-reply>`);
    const errors = rpcErrors(reply);
    expect(errors.map((e) => [e.severity, e.message, e.badElement])).toEqual([
      ['error', 'No vlan matches vlan tag 999 for interface ge-0/0/3.0', ''],
      ['error', 'syntax error', 'port-mode'],
      ['warning', 'statement has no contents; ignored', ''],
    ]);
    expect(errors[0]?.path).toBe('[edit interfaces ge-0/0/3 unit 0 family ethernet-switching]');
  });
});

describe('Junos port configuration', () => {
  it('writes an access port on one numeric VLAN, replacing the old membership, in the chosen syntax', () => {
    for (const syntax of ['interface-mode', 'port-mode'] as const) {
      const edit = parseXml(portEditConfig([{ port: 'ge-0/0/3', vlanId: 200 }], syntax, '0'));
      expect(elements(edit)).toEqual(['target', 'default-operation', 'config']);
      const eth = descend(
        edit,
        'config',
        'configuration',
        'interfaces',
        'interface',
        'unit',
        'family',
        'ethernet-switching',
      );
      expect(textOf(child(eth, syntax))).toBe('access');
      expect(child(eth, 'vlan')?.attrs.operation).toBe('replace');
      expect(textOf(descend(eth, 'vlan', 'members'))).toBe('200');
    }
  });

  it('reads ports back, resolving VLAN names through the vlans stanza', () => {
    const view = parsePortView(
      parseXml(`<rpc-reply><data><configuration>
<interfaces>
 <interface><name>ge-0/0/1</name><unit><name>0</name><family><ethernet-switching>
   <interface-mode>access</interface-mode><vlan><members>svc</members></vlan></ethernet-switching></family></unit></interface>
 <interface><name>ge-0/0/2</name><unit><name>0</name><family><ethernet-switching>
   <port-mode>trunk</port-mode><vlan><members>100</members><members>200</members></vlan></ethernet-switching></family></unit></interface>
 <interface><name>ge-0/0/3</name><unit><name>0</name><family><ethernet-switching>
   <vlan><members>200</members></vlan></ethernet-switching></family></unit></interface>
 <interface><name>ge-0/0/4</name><unit><name>0</name><family><inet/></family></unit></interface>
</interfaces>
<vlans><vlan><name>svc</name><vlan-id>100</vlan-id></vlan><vlan><name>tenant</name><vlan-id>200</vlan-id></vlan></vlans>
</configuration></data></rpc-reply>`),
      '0',
    );
    expect(isOnVlan(view.ports.get('ge-0/0/1'), view.vlanIds, 100)).toBe(true);
    expect(isOnVlan(view.ports.get('ge-0/0/2'), view.vlanIds, 100)).toBe(false);
    expect(describePort(view.ports.get('ge-0/0/2'), view.vlanIds)).toBe('trunk vlans 100,200');
    // No mode statement: Junos's default is access.
    expect(isOnVlan(view.ports.get('ge-0/0/3'), view.vlanIds, 200)).toBe(true);
    expect(describePort(view.ports.get('ge-0/0/4'), view.vlanIds)).toBe('unconfigured');
    expect(describePort(undefined, view.vlanIds)).toBe('unconfigured');
  });
});

function elements(el: ReturnType<typeof parseXml>): string[] {
  return el.children.filter((c) => typeof c !== 'string').map((c) => (c as { name: string }).name);
}
