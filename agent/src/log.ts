/** JSON lines on stderr, one object per event, like the controller's pino output. Never logs the token. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<Level, number> = { debug: 20, info: 30, warn: 40, error: 50 };

export interface Logger {
  debug(fields: Record<string, unknown> | string, msg?: string): void;
  info(fields: Record<string, unknown> | string, msg?: string): void;
  warn(fields: Record<string, unknown> | string, msg?: string): void;
  error(fields: Record<string, unknown> | string, msg?: string): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(
  level: Level,
  write: (line: string) => void = (line) => process.stderr.write(line),
  base: Record<string, unknown> = { service: 'ingot-agent' },
): Logger {
  const min = LEVELS[level];
  const emit = (at: Level, fields: Record<string, unknown> | string, msg?: string) => {
    if (LEVELS[at] < min) return;
    const [extra, text] = typeof fields === 'string' ? [{}, fields] : [fields, msg ?? ''];
    const line: Record<string, unknown> = { level: at, time: new Date().toISOString(), ...base };
    for (const [key, value] of Object.entries(extra)) {
      line[key] =
        value instanceof Error ? { message: value.message, code: (value as { code?: unknown }).code } : value;
    }
    line.msg = text;
    write(`${JSON.stringify(line)}\n`);
  };
  return {
    debug: (f, m) => emit('debug', f, m),
    info: (f, m) => emit('info', f, m),
    warn: (f, m) => emit('warn', f, m),
    error: (f, m) => emit('error', f, m),
    child: (fields) => createLogger(level, write, { ...base, ...fields }),
  };
}
