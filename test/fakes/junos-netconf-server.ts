/**
 * A Juniper EX/QFX switch as far as Ingot's NETCONF RPCs go, on ssh2's
 * server side: the `netconf` SSH subsystem (RFC 6242, end-of-message and
 * chunked framing), a candidate and a running configuration of access ports
 * and VLANs, `<lock>`/`<unlock>` (held by one session, released when it
 * ends), `<edit-config>` with Junos syntax checks (`interface-mode` on ELS,
 * `port-mode` on older EX), `<commit>` with the commit check Junos runs
 * (`No vlan matches vlan tag N for interface ge-0/0/3.0`), confirmed commits
 * that roll back when the timeout passes or the session ends unconfirmed,
 * `<discard-changes>`, `<get-config>` with subtree filters, and
 * `<close-session>`. Errors use Junos's words and element layout.
 *
 * Named behaviours for the unhappy paths: `lockFromOtherSession()` (an
 * operator in `configure exclusive`), `uncommittedChangeByOtherUser()`,
 * `next(rpc, 'drop-before' | 'drop-after' | 'stall')`,
 * `rewritePortOnCommit()` (an apply-group that wins over the edit),
 * `replaceHostKey()` (a replaced switch).
 *
 * Its framing and hello handling are written here independently of the
 * controller's, so that a bug in one is not mirrored by the other.
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import ssh2, { type Connection, type Server, type ServerChannel } from 'ssh2';
import {
  child,
  elements,
  escapeXml,
  parseXml,
  textOf,
  type XmlElement,
} from '../../controller/src/drivers/network/juniper/xml.ts';
import { sshFingerprint } from '../../controller/src/drivers/network/ssh.ts';
import { ed25519KeyPair } from './ssh-keys.ts';

export type JunosSyntax = 'interface-mode' | 'port-mode';

/** One access/trunk port's ethernet-switching configuration (unit 0 unless said otherwise). */
export interface FakePort {
  mode: string;
  members: string[];
}

interface Config {
  /** `ge-0/0/3.0` → its ethernet-switching family. */
  units: Map<string, FakePort>;
  /** VLAN name → id. */
  vlans: Map<string, number>;
}

export interface FakeJunosOptions {
  /** ELS (`interface-mode`, the default) or older EX (`port-mode`). */
  syntax?: JunosSyntax;
  /** Port → the VLAN id its unit 0 is an access member of (0: ethernet-switching without a VLAN). */
  ports: Record<string, number>;
  vlans: { name: string; id: number }[];
  username?: string;
  /** @default 'juniper123' */
  password?: string;
  /** OpenSSH public key allowed to log in as `username`. */
  authorizedKey?: string;
  /** Junos with `rfc-compliant` and a 15.1+ release offers base:1.1 (chunked framing). @default true */
  base11?: boolean;
  /** Offer :confirmed-commit:1.1 (and with it `<cancel-commit>`); Junos offers 1.0 only. @default false */
  confirmedCommit11?: boolean;
  /** Password through keyboard-interactive only, as Junos does by default. @default false */
  keyboardInteractiveOnly?: boolean;
  /** How long every commit takes (real EX switches: seconds). @default 0 */
  commitDelayMs?: number;
}

type Misbehaviour = 'drop-before' | 'drop-after' | 'stall';

/** What the switch logged: every RPC it received, by session. */
export interface RpcRecord {
  session: number;
  rpc: string;
}

// ssh2 is CommonJS: Node's ESM loader only finds some of its named exports.
const { utils } = ssh2;

const NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';
const JUNOS_NS = 'http://xml.juniper.net/junos/21.4R3/junos';
const EOM = ']]>]]>';

function clone(config: Config): Config {
  return {
    units: new Map([...config.units].map(([k, v]) => [k, { mode: v.mode, members: [...v.members] }])),
    vlans: new Map(config.vlans),
  };
}

function sameConfig(a: Config, b: Config): boolean {
  const key = (c: Config) =>
    JSON.stringify([[...c.units].sort(([x], [y]) => x.localeCompare(y)), [...c.vlans].sort()]);
  return key(a) === key(b);
}

/** A Junos `<rpc-error>`; Junos pads messages with newlines. */
function rpcError(
  message: string,
  opts: { tag?: string; type?: string; info?: string; path?: string; daemon?: string } = {},
): string {
  return (
    `<rpc-error>\n<error-type>${opts.type ?? 'protocol'}</error-type>\n` +
    `<error-tag>${opts.tag ?? 'operation-failed'}</error-tag>\n<error-severity>error</error-severity>\n` +
    (opts.daemon ? `<source-daemon>\n${opts.daemon}\n</source-daemon>\n` : '') +
    (opts.path ? `<error-path>\n${escapeXml(opts.path)}\n</error-path>\n` : '') +
    `<error-message>\n${escapeXml(message)}\n</error-message>\n` +
    (opts.info ? `<error-info>\n${opts.info}\n</error-info>\n` : '') +
    '</rpc-error>\n'
  );
}

class RpcFailure extends Error {
  readonly xml: string;
  constructor(xml: string) {
    super('rpc-error');
    this.xml = xml;
  }
}

const syntaxError = (bad: string) =>
  new RpcFailure(rpcError('syntax error', { info: `<bad-element>${escapeXml(bad)}</bad-element>` }));

interface SessionState {
  id: number;
  user: string;
  channel: ServerChannel;
  connection: Connection;
  framing: 'eom' | 'chunked';
  buffer: string;
  closed: boolean;
}

/**
 * The switch. `await FakeJunosSwitch.start({...})`, then point a switch row
 * at `127.0.0.1:<port>` with `hostKeyFingerprint`. Events: `rpc`
 * (RpcRecord), `commit` ({ session, confirmed }), `rollback`
 * ({ reason: 'timeout' | 'session-ended' | 'cancel-commit' }),
 * `session-end` ({ session }).
 */
export class FakeJunosSwitch extends EventEmitter {
  readonly syntax: JunosSyntax;
  running: Config;
  candidate: Config;
  /** Every commit the switch applied (confirmed or confirming), in order. */
  readonly commits: { session: number; confirmed: boolean }[] = [];
  readonly rpcs: RpcRecord[] = [];
  /** The ports of every `<edit-config>` the switch accepted, one list per RPC. */
  readonly edits: string[][] = [];
  port = 0;
  #server: Server;
  #hostKey: string;
  #hostKeyFingerprint: string;
  readonly #opts: Required<Omit<FakeJunosOptions, 'authorizedKey'>> & { authorizedKey?: string };
  readonly #sessions = new Set<SessionState>();
  #nextSessionId = 41_000;
  /** Session id holding the candidate lock; -1 for the simulated operator. */
  #lockHolder: number | undefined;
  #otherLockUser = '';
  #pendingConfirm: { session: number; rollbackTo: Config; timer: NodeJS.Timeout } | undefined;
  readonly #misbehave = new Map<string, Misbehaviour>();
  readonly #holds = new Map<string, Promise<void>>();
  #rewrite: { port: string; vlanId: number } | undefined;

  private constructor(opts: FakeJunosOptions) {
    super();
    this.#opts = {
      syntax: 'interface-mode',
      username: 'netops',
      password: 'juniper123',
      base11: true,
      confirmedCommit11: false,
      keyboardInteractiveOnly: false,
      commitDelayMs: 0,
      ...opts,
    };
    this.syntax = this.#opts.syntax;
    const units = new Map<string, FakePort>();
    for (const [port, vlan] of Object.entries(opts.ports)) {
      units.set(`${port}.0`, { mode: 'access', members: vlan ? [String(vlan)] : [] });
    }
    this.running = { units, vlans: new Map(opts.vlans.map((v) => [v.name, v.id])) };
    this.candidate = clone(this.running);
    const key = ed25519KeyPair();
    this.#hostKey = key.private;
    this.#hostKeyFingerprint = fingerprintOf(key.public);
    this.#server = this.#createServer();
  }

  static async start(opts: FakeJunosOptions): Promise<FakeJunosSwitch> {
    const sw = new FakeJunosSwitch(opts);
    await sw.#listen(0);
    return sw;
  }

  /** `SHA256:…` of the host key, as an operator reads it from `show system ssh host-key`-ish output. */
  get hostKeyFingerprint(): string {
    return this.#hostKeyFingerprint;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The access VLAN ids of a port in the running configuration (numbers as configured). */
  vlansOf(port: string, unit = '0'): string[] {
    return [...(this.running.units.get(`${port}.${unit}`)?.members ?? [])];
  }

  get lockHeld(): boolean {
    return this.#lockHolder !== undefined;
  }

  get confirmPending(): boolean {
    return this.#pendingConfirm !== undefined;
  }

  get openSessions(): number {
    return this.#sessions.size;
  }

  /** Another user holds `configure exclusive`: every `<lock>` is denied until released. */
  lockFromOtherSession(user = 'jsmith'): void {
    this.#lockHolder = -1;
    this.#otherLockUser = user;
  }

  releaseOtherSessionLock(): void {
    if (this.#lockHolder === -1) this.#lockHolder = undefined;
  }

  /** Someone edited the shared candidate without committing: Junos then refuses `<lock>`. */
  uncommittedChangeByOtherUser(port: string, vlanId: number): void {
    this.candidate.units.set(`${port}.0`, { mode: 'access', members: [String(vlanId)] });
  }

  /** The next `<rpc>` named `rpc` (e.g. `commit`, `get-config`) misbehaves once. */
  next(rpc: string, behaviour: Misbehaviour): void {
    this.#misbehave.set(rpc, behaviour);
  }

  /**
   * The next `<rpc>` named `rpc` waits until the returned function is called (a slow switch,
   * frozen at a known point): what a test needs to line requests up behind a session.
   */
  hold(rpc: string): () => void {
    let release = () => {};
    this.#holds.set(rpc, new Promise<void>((resolve) => (release = resolve)));
    return () => release();
  }

  /** Every commit puts `port` back on `vlanId`, as an apply-group or commit script would. */
  rewritePortOnCommit(port: string, vlanId: number): void {
    this.#rewrite = { port, vlanId };
  }

  /** The switch was replaced: it restarts with a new SSH host key on the same port. */
  async replaceHostKey(): Promise<void> {
    const key = ed25519KeyPair();
    this.#hostKey = key.private;
    this.#hostKeyFingerprint = fingerprintOf(key.public);
    const port = this.port;
    await this.#close();
    this.#server = this.#createServer();
    await this.#listen(port);
  }

  /** Drops every session (a switch reboot, a link flap). */
  dropAllSessions(): void {
    for (const s of this.#sessions) s.connection.end();
  }

  async stop(): Promise<void> {
    if (this.#pendingConfirm) clearTimeout(this.#pendingConfirm.timer);
    this.#pendingConfirm = undefined;
    await this.#close();
  }

  async #close(): Promise<void> {
    for (const s of this.#sessions) s.connection.end();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.port = (this.#server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  #createServer(): Server {
    const o = this.#opts;
    const allowed = o.authorizedKey ? utils.parseKey(o.authorizedKey) : undefined;
    return new ssh2.Server({ hostKeys: [this.#hostKey], ident: 'OpenSSH_8.6' }, (connection) => {
      let user = '';
      // ssh2 has setNoDelay on server connections but its types miss it.
      (connection as Connection & { setNoDelay(on: boolean): void }).setNoDelay(true);
      connection.on('error', () => undefined);
      connection.on('authentication', (ctx) => {
        user = ctx.username;
        const methods: ('password' | 'publickey' | 'keyboard-interactive')[] = o.keyboardInteractiveOnly
          ? ['keyboard-interactive', 'publickey']
          : ['password', 'keyboard-interactive', 'publickey'];
        if (ctx.method === 'password' && !o.keyboardInteractiveOnly) {
          if (ctx.username === o.username && ctx.password === o.password) return ctx.accept();
          return ctx.reject(methods);
        }
        if (ctx.method === 'keyboard-interactive') {
          return ctx.prompt([{ prompt: 'Password:', echo: false }], (answers) =>
            ctx.username === o.username && answers[0] === o.password ? ctx.accept() : ctx.reject(methods),
          );
        }
        if (
          ctx.method === 'publickey' &&
          allowed &&
          !(allowed instanceof Error) &&
          ctx.username === o.username
        ) {
          const sameKey = ctx.key.algo === allowed.type && ctx.key.data.equals(allowed.getPublicSSH());
          if (!sameKey) return ctx.reject(methods);
          if (!ctx.signature || !ctx.blob) return ctx.accept();
          return allowed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) ? ctx.accept() : ctx.reject(methods);
        }
        return ctx.reject(methods);
      });
      connection.on('ready', () => {
        connection.on('session', (acceptSession) => {
          const session = acceptSession();
          session.on('subsystem', (accept, reject, info) => {
            if (info.name !== 'netconf') return reject();
            this.#startNetconf(accept(), connection, user);
          });
        });
      });
    });
  }

  #startNetconf(channel: ServerChannel, connection: Connection, user: string): void {
    const s: SessionState = {
      id: this.#nextSessionId++,
      user,
      channel,
      connection,
      framing: 'eom',
      buffer: '',
      closed: false,
    };
    this.#sessions.add(s);
    let helloSeen = false;
    const capabilities = [
      'urn:ietf:params:netconf:base:1.0',
      ...(this.#opts.base11 ? ['urn:ietf:params:netconf:base:1.1'] : []),
      'urn:ietf:params:netconf:capability:candidate:1.0',
      'urn:ietf:params:netconf:capability:confirmed-commit:1.0',
      ...(this.#opts.confirmedCommit11 ? ['urn:ietf:params:netconf:capability:confirmed-commit:1.1'] : []),
      'urn:ietf:params:netconf:capability:validate:1.0',
      'urn:ietf:params:netconf:capability:url:1.0?scheme=http,ftp,file',
      'urn:ietf:params:xml:ns:netconf:base:1.0',
      'urn:ietf:params:xml:ns:netconf:capability:candidate:1.0',
      'urn:ietf:params:xml:ns:netconf:capability:confirmed-commit:1.0',
      'urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring',
      'http://xml.juniper.net/netconf/junos/1.0',
      'http://xml.juniper.net/dmi/system/1.0',
    ];
    channel.write(
      '<!-- No zombies were killed during the creation of this user interface -->\n' +
        `<!-- user ${user}, class j-super-user -->\n` +
        `<hello xmlns="${NS}">\n  <capabilities>\n${capabilities
          .map((c) => `    <capability>${escapeXml(c)}</capability>\n`)
          .join('')}  </capabilities>\n  <session-id>${s.id}</session-id>\n</hello>\n${EOM}\n`,
    );
    const end = () => this.#endSession(s);
    channel.on('close', end);
    connection.on('close', end);
    channel.on('data', (data: Buffer) => {
      s.buffer += data.toString('utf8');
      for (;;) {
        const message = this.#nextMessage(s);
        if (message === undefined) return;
        if (!helloSeen) {
          helloSeen = true;
          const hello = parseXml(message);
          const offered = elements(child(hello, 'capabilities'), 'capability').map((c) => textOf(c));
          if (this.#opts.base11 && offered.includes('urn:ietf:params:netconf:base:1.1'))
            s.framing = 'chunked';
          continue;
        }
        this.#onRpc(s, message);
      }
    });
  }

  /** The fake's own RFC 6242 decoder (string-based; the test switch speaks ASCII). */
  #nextMessage(s: SessionState): string | undefined {
    if (s.framing === 'eom') {
      const at = s.buffer.indexOf(EOM);
      if (at === -1) return undefined;
      const message = s.buffer.slice(0, at);
      s.buffer = s.buffer.slice(at + EOM.length);
      return message;
    }
    let at = 0;
    let message = '';
    for (;;) {
      const header = /^\n#(\d+)\n|^\n##\n/.exec(s.buffer.slice(at, at + 16));
      if (!header) {
        if (s.buffer.length - at >= 16)
          throw new Error(`bad chunk header: ${JSON.stringify(s.buffer.slice(at, at + 16))}`);
        return undefined;
      }
      if (header[0] === '\n##\n') {
        s.buffer = s.buffer.slice(at + 4);
        return message;
      }
      const size = Number(header[1]);
      const start = at + header[0].length;
      if (s.buffer.length < start + size) return undefined;
      message += s.buffer.slice(start, start + size);
      at = start + size;
    }
  }

  #send(s: SessionState, messageId: string, body: string): void {
    if (s.closed) return;
    const reply = `<rpc-reply xmlns="${NS}" xmlns:junos="${JUNOS_NS}" message-id="${escapeXml(messageId)}">\n${body}</rpc-reply>\n`;
    s.channel.write(
      s.framing === 'eom' ? `${reply}${EOM}\n` : `\n#${Buffer.byteLength(reply)}\n${reply}\n##\n`,
    );
  }

  #onRpc(s: SessionState, message: string): void {
    const rpc = parseXml(message);
    const messageId = rpc.attrs['message-id'] ?? '';
    const op = elements(rpc)[0];
    const name = op?.name ?? '';
    this.rpcs.push({ session: s.id, rpc: name });
    this.emit('rpc', { session: s.id, rpc: name } satisfies RpcRecord);
    const held = this.#holds.get(name);
    if (held) {
      this.#holds.delete(name);
      void held.then(() => this.#process(s, messageId, op, name));
      return;
    }
    this.#process(s, messageId, op, name);
  }

  #process(s: SessionState, messageId: string, op: XmlElement | undefined, name: string): void {
    const misbehave = this.#misbehave.get(name);
    if (misbehave) this.#misbehave.delete(name);
    if (misbehave === 'stall') return;
    if (misbehave === 'drop-before') {
      s.connection.end();
      return;
    }
    const finish = (body: string) => {
      if (misbehave === 'drop-after') s.connection.end();
      else this.#send(s, messageId, body);
    };
    if (!op) {
      finish(rpcError('syntax error, expecting <rpc> content'));
      return;
    }
    let result: string | Promise<string>;
    try {
      result = this.#dispatch(s, op);
    } catch (err) {
      if (!(err instanceof RpcFailure)) throw err;
      finish(err.xml);
      return;
    }
    if (typeof result === 'string') {
      finish(result);
      return;
    }
    result.then(finish, (err: unknown) => {
      if (err instanceof RpcFailure) finish(err.xml);
      else finish(rpcError(String(err)));
    });
  }

  #dispatch(s: SessionState, op: XmlElement): string | Promise<string> {
    switch (op.name) {
      case 'lock':
        return this.#lock(s, op);
      case 'unlock':
        return this.#unlock(s, op);
      case 'edit-config':
        return this.#editConfig(s, op);
      case 'get-config':
        return this.#getConfig(op);
      case 'commit':
        return this.#commit(s, op);
      case 'discard-changes':
        this.#checkNotLockedByOther(s);
        this.candidate = clone(this.running);
        return '<ok/>\n';
      case 'cancel-commit':
        if (!this.#opts.confirmedCommit11) throw this.#unsupported(op.name);
        if (!this.#pendingConfirm) throw new RpcFailure(rpcError('No confirmed commit is pending'));
        this.#rollback('cancel-commit');
        return '<ok/>\n';
      case 'close-session':
        setImmediate(() => s.connection.end());
        return '<ok/>\n';
      default:
        throw this.#unsupported(op.name);
    }
  }

  #unsupported(name: string): RpcFailure {
    return new RpcFailure(
      rpcError(`syntax error, expecting <rpc> or <request-end-session>`, {
        tag: 'operation-not-supported',
        info: `<bad-element>${escapeXml(name)}</bad-element>`,
      }),
    );
  }

  #target(op: XmlElement): string {
    const target = elements(child(op, 'target'))[0]?.name ?? '';
    if (target !== 'candidate') {
      throw new RpcFailure(
        rpcError(`${target || 'missing'} is not a supported target: use <candidate/>`, {
          tag: 'invalid-value',
        }),
      );
    }
    return target;
  }

  #lockedMessage(): string {
    const holder = this.#lockHolder === -1 ? this.#otherLockUser : `netconf session ${this.#lockHolder}`;
    const pid = this.#lockHolder === -1 ? 4321 : this.#lockHolder;
    return `configuration database locked by:\n  ${holder} terminal pts/0 (pid ${pid}) on since 2024-05-02 09:12:44 UTC\n      exclusive [edit]`;
  }

  #checkNotLockedByOther(s: SessionState): void {
    if (this.#lockHolder !== undefined && this.#lockHolder !== s.id) {
      throw new RpcFailure(
        rpcError(this.#lockedMessage(), {
          tag: 'in-use',
          info: `<session-id>${this.#lockHolder === -1 ? 4321 : this.#lockHolder}</session-id>`,
        }),
      );
    }
  }

  #lock(s: SessionState, op: XmlElement): string {
    this.#target(op);
    if (this.#lockHolder !== undefined) {
      throw new RpcFailure(
        rpcError(this.#lockedMessage(), {
          tag: 'lock-denied',
          info: `<session-id>${this.#lockHolder === -1 ? 4321 : this.#lockHolder}</session-id>`,
        }),
      );
    }
    if (!sameConfig(this.candidate, this.running)) {
      throw new RpcFailure(rpcError('configuration database modified', { tag: 'lock-denied' }));
    }
    this.#lockHolder = s.id;
    return '<ok/>\n';
  }

  #unlock(s: SessionState, op: XmlElement): string {
    this.#target(op);
    if (this.#lockHolder !== s.id) throw new RpcFailure(rpcError('configuration database not locked'));
    this.#lockHolder = undefined;
    return '<ok/>\n';
  }

  #editConfig(s: SessionState, op: XmlElement): string {
    this.#target(op);
    this.#checkNotLockedByOther(s);
    const configuration = child(child(op, 'config'), 'configuration');
    if (!configuration) throw syntaxError(elements(child(op, 'config'))[0]?.name ?? 'config');
    const next = clone(this.candidate);
    for (const section of elements(configuration)) {
      if (section.name === 'interfaces') this.#editInterfaces(next, section);
      else if (section.name === 'vlans') this.#editVlans(next, section);
      else throw syntaxError(section.name);
    }
    this.candidate = next;
    this.edits.push(
      elements(child(configuration, 'interfaces'), 'interface').map((i) => textOf(child(i, 'name'))),
    );
    return '<ok/>\n';
  }

  #editInterfaces(config: Config, interfaces: XmlElement): void {
    for (const iface of elements(interfaces)) {
      if (iface.name !== 'interface') throw syntaxError(iface.name);
      const name = textOf(child(iface, 'name'));
      if (!/^(ge|xe|et|mge)-\d+\/\d+\/\d+$/.test(name)) throw syntaxError(name || 'interface');
      for (const part of elements(iface)) {
        if (part.name === 'name') continue;
        if (part.name !== 'unit') throw syntaxError(part.name);
        const unit = textOf(child(part, 'name'));
        const key = `${name}.${unit}`;
        for (const unitPart of elements(part)) {
          if (unitPart.name === 'name') continue;
          if (unitPart.name !== 'family') throw syntaxError(unitPart.name);
          for (const family of elements(unitPart)) {
            if (family.name !== 'ethernet-switching') throw syntaxError(family.name);
            this.#editSwitching(config, key, family);
          }
        }
      }
    }
  }

  #editSwitching(config: Config, key: string, eth: XmlElement): void {
    const port = config.units.get(key) ?? { mode: 'access', members: [] };
    for (const item of elements(eth)) {
      const operation = item.attrs.operation ?? item.attrs['nc:operation'] ?? 'merge';
      if (item.name === 'interface-mode' || item.name === 'port-mode') {
        // ELS dropped `port-mode` for `interface-mode`; each syntax is a syntax error on the other platform.
        if (item.name !== this.syntax) throw syntaxError(item.name);
        const mode = textOf(item);
        if (mode !== 'access' && mode !== 'trunk') throw syntaxError(mode);
        port.mode = mode;
      } else if (item.name === 'vlan') {
        const members = elements(item).map((m) => {
          if (m.name !== 'members') throw syntaxError(m.name);
          return textOf(m);
        });
        if (operation === 'replace') port.members = members;
        else if (operation === 'delete') port.members = [];
        else port.members = [...new Set([...port.members, ...members])];
      } else {
        throw syntaxError(item.name);
      }
    }
    config.units.set(key, port);
  }

  #editVlans(config: Config, vlans: XmlElement): void {
    for (const vlan of elements(vlans)) {
      if (vlan.name !== 'vlan') throw syntaxError(vlan.name);
      config.vlans.set(textOf(child(vlan, 'name')), Number(textOf(child(vlan, 'vlan-id'))));
    }
  }

  #getConfig(op: XmlElement): string {
    const source = elements(child(op, 'source'))[0]?.name;
    if (source !== 'running' && source !== 'candidate') {
      throw new RpcFailure(
        rpcError(`${source ?? 'missing'} is not a supported source`, { tag: 'invalid-value' }),
      );
    }
    const config = source === 'running' ? this.running : this.candidate;
    const filter = child(child(op, 'filter'), 'configuration');
    const wantedPorts = filter
      ? elements(child(filter, 'interfaces'), 'interface').map((i) => textOf(child(i, 'name')))
      : undefined;
    const wantVlans = !filter || child(filter, 'vlans') !== undefined;
    const byPort = new Map<string, [string, FakePort][]>();
    for (const [key, value] of config.units) {
      const [port = '', unit = ''] = key.split('.');
      if (wantedPorts && wantedPorts.length > 0 && !wantedPorts.includes(port)) continue;
      if (filter && !child(filter, 'interfaces')) continue;
      byPort.set(port, [...(byPort.get(port) ?? []), [unit, value]]);
    }
    const interfaces = [...byPort]
      .map(
        ([port, units]) =>
          `<interface>\n<name>${escapeXml(port)}</name>\n${units
            .map(
              ([unit, p]) =>
                `<unit>\n<name>${unit}</name>\n<family>\n<ethernet-switching>\n<${this.syntax}>${p.mode}</${this.syntax}>\n` +
                (p.members.length
                  ? `<vlan>\n${p.members.map((m) => `<members>${escapeXml(m)}</members>\n`).join('')}</vlan>\n`
                  : '') +
                '</ethernet-switching>\n</family>\n</unit>\n',
            )
            .join('')}</interface>\n`,
      )
      .join('');
    const vlans = wantVlans
      ? `<vlans>\n${[...config.vlans]
          .map(([name, id]) => `<vlan>\n<name>${escapeXml(name)}</name>\n<vlan-id>${id}</vlan-id>\n</vlan>\n`)
          .join('')}</vlans>\n`
      : '';
    return (
      `<data>\n<configuration junos:changed-seconds="1714641164" junos:changed-localtime="2024-05-02 09:12:44 UTC">\n` +
      (interfaces ? `<interfaces>\n${interfaces}</interfaces>\n` : '') +
      vlans +
      '</configuration>\n</data>\n'
    );
  }

  /** What `commit check` says about a configuration: Junos's messages, one rpc-error each. */
  #commitCheck(config: Config): string[] {
    const errors: string[] = [];
    const vlanIds = new Set(config.vlans.values());
    for (const [key, port] of config.units) {
      const [iface = '', unit = ''] = key.split('.');
      for (const member of port.members) {
        const known = /^\d+$/.test(member) ? vlanIds.has(Number(member)) : config.vlans.has(member);
        if (!known) {
          errors.push(
            rpcError(
              /^\d+$/.test(member)
                ? `No vlan matches vlan tag ${member} for interface ${key}`
                : `Referenced VLAN ${member} is not defined for interface ${key}`,
              { path: `[edit interfaces ${iface} unit ${unit} family ethernet-switching]`, daemon: 'dcd' },
            ),
          );
        }
      }
      if (port.mode === 'access' && port.members.length > 1) {
        errors.push(
          rpcError(
            `Access interface <${key}> has more than one vlan member: <${port.members.join('> and <')}>`,
            {
              daemon: 'l2ald',
            },
          ),
        );
      }
    }
    return errors;
  }

  async #commit(s: SessionState, op: XmlElement): Promise<string> {
    this.#checkNotLockedByOther(s);
    const confirmed = child(op, 'confirmed') !== undefined;
    const timeoutS = Number(textOf(child(op, 'confirm-timeout')) || '600');
    if (this.#opts.commitDelayMs > 0) await new Promise((r) => setTimeout(r, this.#opts.commitDelayMs));
    if (s.closed) throw new RpcFailure(rpcError('session ended during commit'));
    if (this.#rewrite) {
      this.candidate.units.set(`${this.#rewrite.port}.0`, {
        mode: 'access',
        members: [String(this.#rewrite.vlanId)],
      });
    }
    const errors = this.#commitCheck(this.candidate);
    if (errors.length > 0) {
      throw new RpcFailure(`${errors.join('')}${rpcError('\nconfiguration check-out failed\n')}`);
    }
    if (confirmed) {
      const rollbackTo = this.#pendingConfirm?.rollbackTo ?? clone(this.running);
      if (this.#pendingConfirm) clearTimeout(this.#pendingConfirm.timer);
      const timer = setTimeout(() => this.#rollback('timeout'), timeoutS * 1000);
      timer.unref();
      this.#pendingConfirm = { session: s.id, rollbackTo, timer };
    } else if (this.#pendingConfirm) {
      clearTimeout(this.#pendingConfirm.timer);
      this.#pendingConfirm = undefined;
    }
    this.running = clone(this.candidate);
    this.commits.push({ session: s.id, confirmed });
    this.emit('commit', { session: s.id, confirmed });
    return '<ok/>\n';
  }

  #rollback(reason: 'timeout' | 'session-ended' | 'cancel-commit'): void {
    const pending = this.#pendingConfirm;
    if (!pending) return;
    clearTimeout(pending.timer);
    this.#pendingConfirm = undefined;
    this.running = clone(pending.rollbackTo);
    this.candidate = clone(pending.rollbackTo);
    this.emit('rollback', { reason });
  }

  #endSession(s: SessionState): void {
    if (s.closed) return;
    s.closed = true;
    this.#sessions.delete(s);
    if (this.#pendingConfirm?.session === s.id) this.#rollback('session-ended');
    if (this.#lockHolder === s.id) {
      // RFC 6241 §8.3.5.2: the lock holder went away: discard its changes and release the lock.
      this.#lockHolder = undefined;
      this.candidate = clone(this.running);
    }
    this.emit('session-end', { session: s.id });
  }
}

function fingerprintOf(publicKey: string): string {
  const parsed = utils.parseKey(publicKey);
  if (parsed instanceof Error) throw parsed;
  return sshFingerprint(parsed.getPublicSSH());
}
