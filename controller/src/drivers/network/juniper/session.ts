import type { Client, ClientChannel } from 'ssh2';
import type { Secret } from '../../power/power-driver.ts';
import { SwitchProtocolError, SwitchTimeoutError, SwitchUnreachableError } from '../errors.ts';
import { connectSsh } from '../ssh.ts';
import { encodeMessage, type Framing, FramingError, MessageDecoder } from './framing.ts';
import { child, elements, parseXml, textOf, type XmlElement, XmlSyntaxError } from './xml.ts';

export const NETCONF_NS = 'urn:ietf:params:xml:ns:netconf:base:1.0';
export const BASE_10 = 'urn:ietf:params:netconf:base:1.0';
export const BASE_11 = 'urn:ietf:params:netconf:base:1.1';
export const CONFIRMED_COMMIT_11 = 'urn:ietf:params:netconf:capability:confirmed-commit:1.1';
/** NETCONF over SSH's IANA port (RFC 6242). */
export const NETCONF_PORT = 830;

/** One `<rpc-error>` of a reply, as the switch wrote it. */
export interface RpcErrorDetail {
  type: string;
  tag: string;
  severity: string;
  message: string;
  /** `<error-info><bad-element>` for syntax errors. */
  badElement: string;
  /** `<error-path>`, e.g. `[edit interfaces ge-0/0/3 unit 0 family ethernet-switching]`. */
  path: string;
  /** `<error-info><session-id>` of the lock holder for lock-denied. */
  sessionId: string;
}

/** The switch answered an RPC with at least one error-severity `<rpc-error>`. */
export class NetconfRpcError extends Error {
  readonly errors: RpcErrorDetail[];
  readonly rpc: string;

  constructor(rpc: string, errors: RpcErrorDetail[]) {
    super(`${rpc}: ${errors.map((e) => e.message || e.tag).join('; ')}`);
    this.rpc = rpc;
    this.errors = errors;
  }
}

export function rpcErrors(reply: XmlElement): RpcErrorDetail[] {
  return elements(reply, 'rpc-error').map((e) => {
    const info = child(e, 'error-info');
    return {
      type: textOf(child(e, 'error-type')),
      tag: textOf(child(e, 'error-tag')),
      severity: textOf(child(e, 'error-severity')) || 'error',
      message: textOf(child(e, 'error-message')).replace(/\s+/g, ' '),
      badElement: textOf(child(info, 'bad-element')) || textOf(child(e, 'bad-element')),
      path: textOf(child(e, 'error-path')),
      sessionId: textOf(child(info, 'session-id')),
    };
  });
}

export interface NetconfConnectOptions {
  /** The switch's name, for messages. */
  switchName: string;
  host: string;
  /** @default 830 */
  port?: number;
  username: string;
  /** Password for `password` and `keyboard-interactive` authentication (Junos uses both). */
  password?: Secret;
  /** OpenSSH or PEM private key for `publickey` authentication. */
  privateKey?: Secret;
  /** The pinned host key (`SHA256:…`); empty to accept any key and report it through `onHostKey`. */
  hostKeyFingerprint: string;
  /** Called with the presented key's fingerprint when none was pinned (trust on first use). */
  onHostKey?: (fingerprint: string) => void;
  /** Advertise base:1.1 (chunked framing) besides base:1.0. @default true */
  base11?: boolean;
  /** TCP connect, SSH handshake, authentication and hello exchange. @default 15000 */
  connectTimeoutMs?: number;
  /** Aborting drops the session. */
  signal?: AbortSignal;
}

interface Pending {
  messageId: string;
  rpc: string;
  resolve: (reply: XmlElement) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

/**
 * One NETCONF session over the SSH `netconf` subsystem (RFC 6241/6242).
 * RPCs run one at a time, each with its own timeout; a timeout, an abort or
 * a transport error drops the whole session, which makes the switch release
 * any lock it held and roll back an unconfirmed commit.
 */
export class NetconfSession {
  readonly switchName: string;
  /** The switch's `<session-id>`. */
  readonly sessionId: string;
  readonly capabilities: ReadonlySet<string>;
  readonly framing: Framing;
  readonly #ssh: Client;
  readonly #channel: ClientChannel;
  readonly #decoder: MessageDecoder;
  #nextId = 1;
  #pending: Pending | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed: Error | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () =>
    this.#fail(new SwitchUnreachableError({ switchName: this.switchName, switchMessage: 'cancelled' }));

  private constructor(init: {
    switchName: string;
    ssh: Client;
    channel: ClientChannel;
    decoder: MessageDecoder;
    sessionId: string;
    capabilities: Set<string>;
    framing: Framing;
    signal: AbortSignal | undefined;
  }) {
    this.switchName = init.switchName;
    this.#ssh = init.ssh;
    this.#channel = init.channel;
    this.#decoder = init.decoder;
    this.sessionId = init.sessionId;
    this.capabilities = init.capabilities;
    this.framing = init.framing;
    this.#signal = init.signal;
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    init.channel.removeAllListeners('data');
    init.channel.on('data', (data: Buffer) => this.#onData(data));
    const lost = () =>
      this.#fail(
        new SwitchUnreachableError({ switchName: this.switchName, switchMessage: 'the session was closed' }),
      );
    init.channel.on('close', lost);
    init.ssh.on('close', lost);
    init.ssh.on('error', (err: Error) =>
      this.#fail(
        new SwitchUnreachableError({ switchName: this.switchName, switchMessage: err.message, cause: err }),
      ),
    );
  }

  /** Connects, authenticates, opens the `netconf` subsystem and exchanges hellos. */
  static async connect(opts: NetconfConnectOptions): Promise<NetconfSession> {
    const switchName = opts.switchName;
    const timeoutMs = opts.connectTimeoutMs ?? 15_000;
    const started = Date.now();
    const ssh = await connectSsh({
      switchName,
      host: opts.host,
      port: opts.port ?? NETCONF_PORT,
      username: opts.username,
      ...(opts.password ? { password: opts.password } : {}),
      ...(opts.privateKey ? { privateKey: opts.privateKey } : {}),
      hostKeyFingerprint: opts.hostKeyFingerprint,
      ...(opts.onHostKey ? { onHostKey: opts.onHostKey } : {}),
      timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return new Promise<NetconfSession>((resolve, reject) => {
      let settled = false;
      const finish = (err: unknown, session?: NetconfSession) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        ssh.off('close', onClose);
        if (err) {
          ssh.destroy();
          reject(err);
        } else if (session) {
          resolve(session);
        }
      };
      const left = Math.max(1, timeoutMs - (Date.now() - started));
      const timer = setTimeout(
        () =>
          finish(new SwitchTimeoutError({ switchName, switchMessage: 'no hello', step: 'hello', timeoutMs })),
        left,
      );
      const onAbort = () => finish(new SwitchUnreachableError({ switchName, switchMessage: 'cancelled' }));
      const onClose = () =>
        finish(
          new SwitchUnreachableError({ switchName, switchMessage: 'connection closed before the hello' }),
        );
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      ssh.on('close', onClose);
      ssh.subsys('netconf', (err, channel) => {
        if (err) {
          finish(
            new SwitchProtocolError({
              switchName,
              switchMessage: `the netconf subsystem was refused (${err.message}); enable it on the switch (Junos: set system services netconf ssh)`,
              cause: err,
            }),
          );
          return;
        }
        NetconfSession.#hello(switchName, ssh, channel, opts.base11 ?? true, opts.signal).then(
          (session) => finish(undefined, session),
          (helloErr) => finish(helloErr),
        );
      });
    });
  }

  static #hello(
    switchName: string,
    ssh: Client,
    channel: ClientChannel,
    base11: boolean,
    signal: AbortSignal | undefined,
  ): Promise<NetconfSession> {
    const decoder = new MessageDecoder();
    return new Promise((resolve, reject) => {
      const onData = (data: Buffer) => {
        let message: string | undefined;
        try {
          decoder.push(data);
          message = decoder.next();
        } catch (err) {
          return reject(
            new SwitchProtocolError({ switchName, switchMessage: `hello: ${(err as Error).message}` }),
          );
        }
        if (message === undefined) return;
        channel.off('data', onData);
        let hello: XmlElement;
        try {
          hello = parseXml(message);
        } catch (err) {
          return reject(
            new SwitchProtocolError({ switchName, switchMessage: `hello: ${(err as Error).message}` }),
          );
        }
        if (hello.name !== 'hello') {
          return reject(
            new SwitchProtocolError({ switchName, switchMessage: `expected <hello>, got <${hello.name}>` }),
          );
        }
        const capabilities = new Set(
          elements(child(hello, 'capabilities'), 'capability').map((c) => textOf(c)),
        );
        const sessionId = textOf(child(hello, 'session-id'));
        if (!capabilities.has(BASE_10) && !capabilities.has(BASE_11)) {
          return reject(
            new SwitchProtocolError({
              switchName,
              switchMessage: 'the switch offers neither base:1.0 nor base:1.1',
            }),
          );
        }
        const ours = base11 ? [BASE_10, BASE_11] : [BASE_10];
        const mine = `<?xml version="1.0" encoding="UTF-8"?><hello xmlns="${NETCONF_NS}"><capabilities>${ours
          .map((c) => `<capability>${c}</capability>`)
          .join('')}</capabilities></hello>`;
        channel.write(encodeMessage(mine, 'eom'));
        const framing: Framing = base11 && capabilities.has(BASE_11) ? 'chunked' : 'eom';
        decoder.setFraming(framing);
        const session = new NetconfSession({
          switchName,
          ssh,
          channel,
          decoder,
          sessionId,
          capabilities,
          framing,
          signal,
        });
        resolve(session);
        // Anything that arrived with the hello belongs to the new framing.
        session.#onData(Buffer.alloc(0));
      };
      channel.on('data', onData);
    });
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Sends `<rpc>` with `body` and resolves with the `<rpc-reply>`. Rejects with
   * NetconfRpcError when the reply holds an error-severity `<rpc-error>`
   * (warnings are returned with the reply), with SwitchTimeoutError after
   * `timeoutMs` (the session is dropped), or with SwitchUnreachableError when
   * the session ends first.
   */
  rpc(body: string, opts: { timeoutMs: number; name?: string }): Promise<XmlElement> {
    const name = opts.name ?? /^<([\w-]+)/.exec(body)?.[1] ?? 'rpc';
    const run = () =>
      new Promise<XmlElement>((resolve, reject) => {
        if (this.#closed) return reject(this.#closed);
        const messageId = String(this.#nextId++);
        const timer = setTimeout(() => {
          const err = new SwitchTimeoutError({
            switchName: this.switchName,
            switchMessage: `no reply to <${name}>`,
            step: `<${name}>`,
            timeoutMs: opts.timeoutMs,
          });
          this.#fail(err);
        }, opts.timeoutMs);
        this.#pending = { messageId, rpc: name, resolve, reject, timer };
        this.#channel.write(
          encodeMessage(`<rpc message-id="${messageId}" xmlns="${NETCONF_NS}">${body}</rpc>`, this.framing),
        );
      });
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Ends the session politely (`<close-session/>`), then the SSH connection. Never throws. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (!this.#closed) {
      await this.rpc('<close-session/>', { timeoutMs }).catch(() => undefined);
    }
    this.destroy();
  }

  /** Drops the connection at once: the switch releases the lock and rolls back an unconfirmed commit. */
  destroy(): void {
    this.#fail(
      new SwitchUnreachableError({ switchName: this.switchName, switchMessage: 'the session was closed' }),
    );
  }

  #fail(err: Error): void {
    if (!this.#closed) this.#closed = err;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(this.#closed);
    }
    this.#channel.destroy();
    this.#ssh.end();
    this.#ssh.destroy();
  }

  #onData(data: Buffer): void {
    try {
      this.#decoder.push(data);
      for (let message = this.#decoder.next(); message !== undefined; message = this.#decoder.next()) {
        this.#onMessage(message);
      }
    } catch (err) {
      if (err instanceof FramingError || err instanceof XmlSyntaxError) {
        this.#fail(
          new SwitchProtocolError({ switchName: this.switchName, switchMessage: err.message, cause: err }),
        );
      } else {
        throw err;
      }
    }
  }

  #onMessage(message: string): void {
    const reply = parseXml(message);
    const pending = this.#pending;
    if (reply.name !== 'rpc-reply' || !pending) {
      // Junos sends nothing unsolicited on a plain session; anything else means the stream is out of step.
      throw new XmlSyntaxError(`unexpected <${reply.name}> with no request outstanding`);
    }
    const id = reply.attrs['message-id'];
    if (id !== undefined && id !== pending.messageId) {
      throw new XmlSyntaxError(`reply to message-id ${id} while waiting for ${pending.messageId}`);
    }
    this.#pending = undefined;
    clearTimeout(pending.timer);
    const errors = rpcErrors(reply).filter((e) => e.severity === 'error');
    if (errors.length > 0) pending.reject(new NetconfRpcError(pending.rpc, errors));
    else pending.resolve(reply);
  }
}
