import { createHash } from 'node:crypto';
import { Client } from 'ssh2';
import type { Secret } from '../power/power-driver.ts';
import {
  SwitchAuthError,
  SwitchHostKeyMismatchError,
  SwitchTimeoutError,
  SwitchUnreachableError,
} from './errors.ts';

/** OpenSSH's fingerprint format, `SHA256:<base64 without padding>`, of a raw public key blob. */
export function sshFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

export interface SshConnectOptions {
  /** The switch's name, for messages. */
  switchName: string;
  host: string;
  port: number;
  username: string;
  /** Password for `password` and `keyboard-interactive` authentication (Junos uses both). */
  password?: Secret;
  /** OpenSSH or PEM private key for `publickey` authentication. */
  privateKey?: Secret;
  /** The pinned host key (`SHA256:…`); empty to accept any key and report it through `onHostKey`. */
  hostKeyFingerprint: string;
  /** Called with the presented key's fingerprint when none was pinned (trust on first use). */
  onHostKey?: (fingerprint: string) => void;
  /** TCP connect, SSH handshake and authentication. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * An authenticated SSH connection to a switch, its host key checked against
 * the pinned one. Rejects with SwitchHostKeyMismatchError, SwitchAuthError,
 * SwitchTimeoutError or SwitchUnreachableError. Never logs a credential.
 */
export function connectSsh(opts: SshConnectOptions): Promise<Client> {
  const { switchName, timeoutMs } = opts;
  const ssh = new Client();
  let presented = '';
  let mismatch = false;
  return new Promise<Client>((resolve, reject) => {
    let settled = false;
    const finish = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      // The error and close listeners stay: once settled they do nothing, and an 'error' event
      // without any listener would crash the process before the caller attaches its own.
      if (err) {
        ssh.destroy();
        reject(err);
      } else {
        resolve(ssh);
      }
    };
    const timer = setTimeout(
      () =>
        finish(
          new SwitchTimeoutError({
            switchName,
            switchMessage: 'no SSH handshake',
            step: 'connect',
            timeoutMs,
          }),
        ),
      timeoutMs,
    );
    const onAbort = () =>
      finish(
        new SwitchUnreachableError({ switchName, switchMessage: 'cancelled', cause: opts.signal?.reason }),
      );
    const onError = (err: Error & { level?: string }) => {
      if (mismatch) {
        finish(new SwitchHostKeyMismatchError({ switchName, pinned: opts.hostKeyFingerprint, presented }));
      } else if (err.level === 'client-authentication') {
        finish(new SwitchAuthError({ switchName, switchMessage: err.message, cause: err }));
      } else if (err.level === 'client-timeout') {
        finish(
          new SwitchTimeoutError({ switchName, switchMessage: err.message, step: 'connect', timeoutMs }),
        );
      } else {
        finish(new SwitchUnreachableError({ switchName, switchMessage: err.message, cause: err }));
      }
    };
    const onClose = () =>
      finish(
        new SwitchUnreachableError({
          switchName,
          switchMessage: 'connection closed during the SSH handshake',
        }),
      );
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    ssh.on('error', onError);
    ssh.on('close', onClose);
    ssh.on('keyboard-interactive', (_name, _instructions, _lang, prompts, answer) => {
      // Junos asks "Password:" through keyboard-interactive when password authentication is off.
      answer(prompts.map(() => opts.password?.reveal() ?? ''));
    });
    ssh.on('ready', () => finish(undefined));
    const privateKey = opts.privateKey?.reveal();
    const password = opts.password?.reveal();
    ssh.connect({
      host: opts.host,
      port: opts.port,
      username: opts.username,
      ...(password ? { password } : {}),
      ...(privateKey ? { privateKey } : {}),
      tryKeyboard: Boolean(password),
      readyTimeout: timeoutMs,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        presented = sshFingerprint(key);
        if (!opts.hostKeyFingerprint) {
          opts.onHostKey?.(presented);
          return true;
        }
        mismatch = presented !== opts.hostKeyFingerprint;
        return !mismatch;
      },
    });
    // Switch sessions are request/response: without this, Nagle and delayed ACKs add ≈ 40 ms a round trip.
    ssh.setNoDelay(true);
  });
}
