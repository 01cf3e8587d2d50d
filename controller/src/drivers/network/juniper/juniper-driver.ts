import type { FieldViolation } from '../../../domain/errors.ts';
import {
  PortReadbackError,
  SwitchConfigRejectedError,
  SwitchError,
  SwitchLockedError,
  SwitchPortNotFoundError,
  SwitchProtocolError,
} from '../errors.ts';
import {
  type DriverCallOptions,
  intOption,
  type NetworkDriver,
  type PortChange,
  type PortChangeOutcome,
  type PortStatus,
  type SwitchTarget,
  unknownOptions,
} from '../network-driver.ts';
import {
  describePort,
  isOnVlan,
  JUNOS_SYNTAXES,
  type JunosPortView,
  type JunosSyntax,
  memberVlanIds,
  parsePortView,
  portEditConfig,
  portsGetConfig,
} from './junos-config.ts';
import { CONFIRMED_COMMIT_11, NetconfRpcError, NetconfSession } from './session.ts';
import { x } from './xml.ts';

/** The Juniper driver's `driver_options`, with their defaults. */
export interface JuniperOptions {
  /** `interface-mode` (ELS EX, QFX) or `port-mode` (older EX). @default interface-mode */
  syntax: JunosSyntax;
  /** Logical unit of the access ports. @default 0 */
  unit: string;
  /** `<confirm-timeout>` of the confirmed commit: the switch rolls back after this without confirmation. @default 60 s */
  confirmTimeoutS: number;
  /** Connect, SSH handshake and hello. @default 15000 ms */
  connectTimeoutMs: number;
  /** Every RPC but commits. @default 30000 ms */
  rpcTimeoutMs: number;
  /** Each commit (EX commits take 10–60 s). @default 120000 ms */
  commitTimeoutMs: number;
  /** Offer base:1.1 chunked framing. @default true */
  base11: boolean;
}

const KNOWN = [
  'syntax',
  'unit',
  'confirm_timeout_s',
  'connect_timeout_ms',
  'rpc_timeout_ms',
  'commit_timeout_ms',
  'framing',
] as const;

export function juniperOptions(
  options: Readonly<Record<string, string>>,
  violations?: FieldViolation[],
): JuniperOptions {
  const syntax = options.syntax ?? 'interface-mode';
  if (!JUNOS_SYNTAXES.includes(syntax as JunosSyntax)) {
    violations?.push({
      field: 'switch.driver_options.syntax',
      description: `must be one of ${JUNOS_SYNTAXES.join(', ')}`,
    });
  }
  const unit = options.unit ?? '0';
  if (!/^\d{1,5}$/.test(unit))
    violations?.push({ field: 'switch.driver_options.unit', description: 'must be a unit number' });
  const framing = options.framing ?? 'auto';
  if (framing !== 'auto' && framing !== 'eom') {
    violations?.push({ field: 'switch.driver_options.framing', description: 'must be auto or eom' });
  }
  return {
    syntax: syntax as JunosSyntax,
    unit,
    confirmTimeoutS: intOption(options, 'confirm_timeout_s', { min: 1, max: 3600 }, violations) ?? 60,
    connectTimeoutMs:
      intOption(options, 'connect_timeout_ms', { min: 100, max: 600_000 }, violations) ?? 15_000,
    rpcTimeoutMs: intOption(options, 'rpc_timeout_ms', { min: 100, max: 600_000 }, violations) ?? 30_000,
    commitTimeoutMs:
      intOption(options, 'commit_timeout_ms', { min: 100, max: 1_800_000 }, violations) ?? 120_000,
    base11: framing !== 'eom',
  };
}

/**
 * Juniper EX/QFX over NETCONF (RFC 6241) on the SSH `netconf` subsystem. A
 * batch is one transaction: `<lock>` the candidate, `<edit-config>` every
 * port, `<commit>` confirmed with a short timeout, read the ports back from
 * the running configuration, confirm, `<unlock>`. Any error discards the
 * candidate; a commit that was not confirmed is cancelled (or, without
 * confirmed-commit:1.1, undone by dropping the session, which RFC 6241
 * §8.4 makes the switch roll back), and the lock is always released.
 */
export class JuniperDriver implements NetworkDriver {
  readonly name = 'juniper';

  validateOptions(options: Readonly<Record<string, string>>): FieldViolation[] {
    const violations = unknownOptions(options, KNOWN, this.name);
    juniperOptions(options, violations);
    return violations;
  }

  async applyPortChanges(
    sw: SwitchTarget,
    changes: readonly PortChange[],
    opts: DriverCallOptions = {},
  ): Promise<PortChangeOutcome[]> {
    if (changes.length === 0) return [];
    const o = juniperOptions(sw.options);
    const session = await this.#open(sw, o, opts);
    let drop = false;
    try {
      await this.#call(sw, session, x('lock', {}, x('target', {}, x('candidate'))), o.rpcTimeoutMs);
      let confirmPending = false;
      try {
        const ports = changes.map((c) => c.port);
        const before = await this.#read(sw, session, ports, o);
        const needed = changes.filter(
          (c) => !isOnVlan(before.ports.get(c.port), before.vlanIds, c.network.vlanId),
        );
        if (needed.length > 0) {
          await this.#call(
            sw,
            session,
            portEditConfig(
              needed.map((c) => ({ port: c.port, vlanId: c.network.vlanId })),
              o.syntax,
              o.unit,
            ),
            o.rpcTimeoutMs,
          );
          await this.#call(
            sw,
            session,
            x('commit', {}, x('confirmed'), x('confirm-timeout', {}, String(o.confirmTimeoutS))),
            o.commitTimeoutMs,
          );
          confirmPending = true;
          const after = await this.#read(
            sw,
            session,
            needed.map((c) => c.port),
            o,
          );
          for (const c of needed) {
            const port = after.ports.get(c.port);
            if (!isOnVlan(port, after.vlanIds, c.network.vlanId)) {
              throw new PortReadbackError({
                switchName: sw.name,
                port: c.port,
                wanted: `access vlan ${c.network.vlanId}`,
                got: describePort(port, after.vlanIds),
              });
            }
          }
          await this.#call(sw, session, x('commit'), o.commitTimeoutMs);
          confirmPending = false;
        }
        const changed = new Set(needed.map((c) => c.port));
        return changes.map((c) => ({ port: c.port, changed: changed.has(c.port) }));
      } catch (err) {
        if (!session.closed) {
          await session.rpc(x('discard-changes'), { timeoutMs: o.rpcTimeoutMs }).catch(() => undefined);
          if (confirmPending) {
            if (session.capabilities.has(CONFIRMED_COMMIT_11)) {
              await session.rpc(x('cancel-commit'), { timeoutMs: o.commitTimeoutMs }).catch(() => {
                drop = true;
              });
            } else {
              drop = true;
            }
          }
        }
        throw err;
      } finally {
        if (!drop && !session.closed) {
          await session
            .rpc(x('unlock', {}, x('target', {}, x('candidate'))), { timeoutMs: o.rpcTimeoutMs })
            .catch(() => {
              drop = true;
            });
        }
      }
    } finally {
      if (drop) session.destroy();
      else await session.close(o.rpcTimeoutMs);
    }
  }

  async portStatus(sw: SwitchTarget, port: string, opts: DriverCallOptions = {}): Promise<PortStatus> {
    const o = juniperOptions(sw.options);
    const session = await this.#open(sw, o, opts);
    try {
      const view = await this.#read(sw, session, [port], o);
      const config = view.ports.get(port);
      if (!config) {
        throw new SwitchPortNotFoundError({
          switchName: sw.name,
          port,
          switchMessage: 'the configuration has no such interface',
        });
      }
      return { port, mode: config.mode, vlanIds: memberVlanIds(config, view.vlanIds), bridge: '', link: '' };
    } finally {
      await session.close(o.rpcTimeoutMs);
    }
  }

  async #open(sw: SwitchTarget, o: JuniperOptions, opts: DriverCallOptions): Promise<NetconfSession> {
    const session = await NetconfSession.connect({
      switchName: sw.name,
      host: sw.host,
      ...(sw.port === undefined ? {} : { port: sw.port }),
      username: sw.username,
      password: sw.password,
      privateKey: sw.privateKey,
      hostKeyFingerprint: sw.hostKeyFingerprint,
      ...(opts.onHostKey ? { onHostKey: opts.onHostKey } : {}),
      base11: o.base11,
      connectTimeoutMs: o.connectTimeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return session;
  }

  async #read(
    sw: SwitchTarget,
    session: NetconfSession,
    ports: string[],
    o: JuniperOptions,
  ): Promise<JunosPortView> {
    const reply = await this.#call(sw, session, portsGetConfig(ports, 'running'), o.rpcTimeoutMs);
    try {
      return parsePortView(reply, o.unit);
    } catch (err) {
      throw new SwitchProtocolError({
        switchName: sw.name,
        switchMessage: `get-config: ${(err as Error).message}`,
      });
    }
  }

  /** One RPC; the switch's `<rpc-error>`s become typed errors carrying its own message. */
  async #call(sw: SwitchTarget, session: NetconfSession, body: string, timeoutMs: number) {
    try {
      return await session.rpc(body, { timeoutMs });
    } catch (err) {
      if (!(err instanceof NetconfRpcError)) throw err;
      const first = err.errors[0];
      const switchMessage = err.errors.map((e) => e.message || e.tag).join('; ');
      if (err.rpc === 'lock' || first?.tag === 'lock-denied' || first?.tag === 'in-use') {
        throw new SwitchLockedError({ switchName: sw.name, switchMessage, cause: err });
      }
      const badElement = err.errors.find((e) => e.badElement)?.badElement;
      const syntax = juniperOptions(sw.options).syntax;
      const wrongSyntax = badElement === 'port-mode' || badElement === 'interface-mode';
      throw new SwitchConfigRejectedError({
        switchName: sw.name,
        switchMessage,
        ...(badElement ? { badElement } : {}),
        ...(wrongSyntax
          ? {
              hint: `this switch does not know ${syntax}: set the switch's driver_options syntax=${syntax === 'port-mode' ? 'interface-mode' : 'port-mode'}`,
            }
          : {}),
        cause: err,
      });
    }
  }
}

/** True when a failed batch may succeed if retried as it is. */
export function isTransient(err: unknown): boolean {
  return err instanceof SwitchError && err.transient;
}
