import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../controller/src/log/logger.ts';

const SECRET = 's3cr3t-Value-42';

/** A real logger and everything it wrote. */
function memoryLogger(level = 'info') {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { log: createLogger(level, sink), output: () => chunks.join('') };
}

/** Logs `fields` once and returns the text written plus the parsed line. */
function logged(fields: Record<string, unknown>): { text: string; line: Record<string, unknown> } {
  const { log, output } = memoryLogger();
  log.info(fields, 'node registered');
  const text = output();
  return { text, line: JSON.parse(text) };
}

const nest = (depth: number, key: string): Record<string, unknown> => {
  let value: Record<string, unknown> = { [key]: SECRET, name: 'node-1' };
  for (let i = depth; i > 0; i--) value = { [`level${i}`]: value };
  return value;
};

describe('createLogger', () => {
  it('writes JSON lines with a level label, ISO time and the service name', () => {
    const { line } = logged({ node: 'node-1' });
    expect(line).toMatchObject({
      level: 'info',
      service: 'ingot-controller',
      node: 'node-1',
      msg: 'node registered',
    });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it('drops messages below its level', () => {
    const { log, output } = memoryLogger('warn');
    log.info({ node: 'node-1' }, 'quiet');
    log.warn('loud');
    expect(output()).not.toContain('quiet');
    expect(output()).toContain('loud');
  });

  it.each(['password', 'bmcPassword', 'token', 'authorization'])('redacts a top-level %s', (key) => {
    const { text, line } = logged({ [key]: SECRET });
    expect(text).not.toContain(SECRET);
    expect(line[key]).toBe('[redacted]');
  });

  it.each(['password', 'bmcPassword', 'token', 'authorization'])('redacts %s one level deep', (key) => {
    const { text, line } = logged(nest(1, key));
    expect(text).not.toContain(SECRET);
    expect(line.level1).toEqual({ [key]: '[redacted]', name: 'node-1' });
  });

  it.each(['password', 'bmcPassword'])('redacts %s two levels deep', (key) => {
    const { text, line } = logged(nest(2, key));
    expect(text).not.toContain(SECRET);
    expect(line.level1).toEqual({ level2: { [key]: '[redacted]', name: 'node-1' } });
  });

  it.each(['token', 'authorization'])('redacts %s two levels deep', (key) => {
    const { text } = logged(nest(2, key));
    expect(text).not.toContain(SECRET);
  });

  it('redacts credentials inside arrays of objects', () => {
    const { text } = logged({ nodes: [{ name: 'node-1', bmcPassword: SECRET }] });
    expect(text).not.toContain(SECRET);
    expect(text).toContain('node-1');
  });

  it('redacts credentials bound to a child logger', () => {
    const { log, output } = memoryLogger();
    log.child({ request: { authorization: `Bearer ${SECRET}` } }).info('call');
    expect(output()).not.toContain(SECRET);
  });

  it('leaves the objects it logs untouched', () => {
    const node = { name: 'node-1', bmcPassword: SECRET };
    logged({ node });
    expect(node.bmcPassword).toBe(SECRET);
  });
});
