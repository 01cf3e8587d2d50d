import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeMessage,
  FramingError,
  MessageDecoder,
} from '../../controller/src/drivers/network/juniper/framing.ts';

function drain(decoder: MessageDecoder): string[] {
  const out: string[] = [];
  for (let m = decoder.next(); m !== undefined; m = decoder.next()) out.push(m);
  return out;
}

/** Feeds `bytes` in pieces cut at `cuts` and returns every message decoded. */
function decodeInPieces(bytes: Buffer, cuts: number[], framing: 'eom' | 'chunked'): string[] {
  const decoder = new MessageDecoder();
  decoder.setFraming(framing);
  const out: string[] = [];
  let at = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
    decoder.push(bytes.subarray(at, cut));
    out.push(...drain(decoder));
    at = cut;
  }
  decoder.push(bytes.subarray(at));
  out.push(...drain(decoder));
  return out;
}

describe('NETCONF end-of-message framing (base:1.0)', () => {
  it('splits messages on ]]>]]>, also when the marker straddles two reads', () => {
    const decoder = new MessageDecoder();
    decoder.push(Buffer.from('<hello/>]]>'));
    expect(decoder.next()).toBeUndefined();
    decoder.push(Buffer.from(']]><rpc-reply/>]]>]]>'));
    expect(drain(decoder)).toEqual(['<hello/>', '<rpc-reply/>']);
  });

  it('round-trips any messages cut anywhere', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ minLength: 1 }).filter((s) => !s.includes(']]>]]>') && !s.endsWith(']')),
          {
            minLength: 1,
            maxLength: 5,
          },
        ),
        fc.array(fc.nat(), { maxLength: 8 }),
        (messages, cuts) => {
          const bytes = Buffer.concat(messages.map((m) => encodeMessage(m, 'eom')));
          expect(decodeInPieces(bytes, cuts, 'eom')).toEqual(messages);
        },
      ),
    );
  });
});

describe('NETCONF chunked framing (base:1.1, RFC 6242 §4.2)', () => {
  it('reads the RFC example: two chunks make one message', () => {
    const decoder = new MessageDecoder();
    decoder.setFraming('chunked');
    decoder.push(Buffer.from('\n#4\n<rpc\n#18\n message-id="102"\n\n##\n'));
    expect(drain(decoder)).toEqual(['<rpc message-id="102"\n']);
  });

  it('counts chunk sizes in bytes, not characters', () => {
    const message = '<error-message>Größe ✓</error-message>';
    const decoder = new MessageDecoder();
    decoder.setFraming('chunked');
    decoder.push(encodeMessage(message, 'chunked'));
    expect(decoder.next()).toBe(message);
  });

  it('round-trips any messages, multi-byte characters included, cut anywhere', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ minLength: 1, unit: 'grapheme' }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (messages, cuts) => {
          const bytes = Buffer.concat(messages.map((m) => encodeMessage(m, 'chunked')));
          expect(decodeInPieces(bytes, cuts, 'chunked')).toEqual(messages);
        },
      ),
    );
  });

  it('switches framing after the hello and reads what followed it under the new framing', () => {
    const decoder = new MessageDecoder();
    decoder.push(Buffer.concat([encodeMessage('<hello/>', 'eom'), encodeMessage('<rpc/>', 'chunked')]));
    expect(decoder.next()).toBe('<hello/>');
    decoder.setFraming('chunked');
    expect(decoder.next()).toBe('<rpc/>');
  });

  it('tolerates the newline Junos writes after the hello end-of-message marker', () => {
    const decoder = new MessageDecoder();
    decoder.push(Buffer.from('<hello/>\n]]>]]>\n'));
    expect(decoder.next()).toBe('<hello/>\n');
    decoder.setFraming('chunked');
    expect(decoder.next()).toBeUndefined();
    decoder.push(Buffer.from('\n#5\n<ok/>\n##\n'));
    expect(decoder.next()).toBe('<ok/>');
  });

  it.each([
    ['a missing LF # header', 'garbage'],
    ['a zero chunk size', '\n#0\n'],
    ['a chunk size with a leading zero', '\n#01\nx'],
    ['a chunk size beyond 4294967295', '\n#4294967296\n'],
    ['an end marker with no chunk before it', '\n##\n'],
    ['a malformed end marker', '\n#1\nx\n##x'],
  ])('refuses %s', (_what, wire) => {
    const decoder = new MessageDecoder();
    decoder.setFraming('chunked');
    decoder.push(Buffer.from(wire));
    expect(() => drain(decoder)).toThrow(FramingError);
  });

  it('refuses a message beyond the size limit instead of buffering it forever', () => {
    const decoder = new MessageDecoder({ maxMessageBytes: 16 });
    decoder.push(Buffer.from('x'.repeat(17)));
    expect(() => decoder.next()).toThrow(/size limit/);
    const chunked = new MessageDecoder({ maxMessageBytes: 16 });
    chunked.setFraming('chunked');
    chunked.push(Buffer.from('\n#10\n0123456789\n#10\n0123456789'));
    expect(() => drain(chunked)).toThrow(/size limit/);
  });

  it('cannot frame an empty message in chunks', () => {
    expect(() => encodeMessage('', 'chunked')).toThrow(FramingError);
  });
});
