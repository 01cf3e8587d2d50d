import { type Logger, pino } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stdout. Credentials are redacted at the root, so no
 * call site can leak a password or token by logging a whole object.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'ingot-controller' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          'password',
          '*.password',
          '*.*.password',
          'bmcPassword',
          '*.bmcPassword',
          '*.*.bmcPassword',
          'token',
          '*.token',
          '*.*.token',
          'authorization',
          '*.authorization',
          '*.*.authorization',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
