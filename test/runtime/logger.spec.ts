import { strict as assert } from 'node:assert';
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { envFlag, levelled } from '../../runtime/logger.js';
import type { Logger } from '../../runtime/index.js';
import { echoPair } from '../fixtures/pair.js';
import { swarm, type Swarm } from '../fixtures/swarm.js';

/** A Console writing into two strings. */
function capturedConsole(): { console: Console; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (text: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        append(chunk.toString());
        done();
      },
    });
  return {
    console: new Console({ stdout: sink((t) => (out += t)), stderr: sink((t) => (err += t)) }),
    out: () => out,
    err: () => err,
  };
}

function recorder(): { logger: Required<Logger>; lines: string[] } {
  const lines: string[] = [];
  const at =
    (level: string) =>
    (message: string): void =>
      void lines.push(`${level} ${message}`);
  return { logger: { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

describe('logging: levels, console, PEERLINE_TRACE', () => {
  let s: Swarm | undefined;
  const saved = process.env.PEERLINE_TRACE;

  afterEach(async () => {
    if (saved === undefined) delete process.env.PEERLINE_TRACE;
    else process.env.PEERLINE_TRACE = saved;
    await s?.stopAll();
    s = undefined;
  });

  it('PEERLINE_TRACE: 1, true, yes, on turn tracing on; 0, false, empty and the rest do not', () => {
    for (const on of ['1', 'true', 'TRUE', 'yes', 'on', ' 1 ']) assert.equal(envFlag(on), true, on);
    for (const off of [undefined, '', '0', 'false', 'False', 'no', 'off', '2', 'trace']) assert.equal(envFlag(off), false, String(off));
  });

  for (const [value, expected] of [
    ['0', 0],
    ['', 0],
    ['false', 0],
    ['1', 3],
    ['true', 3],
  ] as const) {
    it(`PEERLINE_TRACE=${JSON.stringify(value)} writes ${expected} trace lines for a connection made`, async () => {
      process.env.PEERLINE_TRACE = value;
      s = await swarm();
      const { logger, lines } = recorder();
      // No `trace` option: the environment decides.
      await echoPair(s, { trace: undefined, logger });
      const traces = lines.filter((l) => l.startsWith('trace ') && / peer b: /.test(l));
      assert.equal(traces.length, expected, traces.join('\n'));
      if (expected > 0) assert.equal(traces[0], 'trace peerline a peer b: new -> connecting (xstate.init)');
    });
  }

  it('a console as logger writes one plain line per transition at trace level (console.debug), never a stack', async () => {
    s = await swarm();
    const c = capturedConsole();
    await echoPair(s, { trace: true, logger: c.console });
    const lines = c.out().trim().split('\n');
    assert.deepEqual(lines.filter((l) => / peer b: /.test(l)), [
      'peerline a peer b: new -> connecting (xstate.init)',
      'peerline a peer b: connecting -> handshaking (xstate.done.actor.0.peerConnection.connecting.dialing)',
      // 'a' dials with the lower id: ready in the same step as the dial's end, its hello sent.
      'peerline a peer b: handshaking -> ready (xstate.done.actor.0.peerConnection.connecting.dialing)',
    ]);
    assert.equal(c.err(), '', 'nothing on stderr: console.trace would print "Trace:" and a stack');
  });

  it('levels: below the level nothing is written; the default is warn', () => {
    const { logger, lines } = recorder();
    const all = (l: ReturnType<typeof levelled>): void => {
      l.trace('t');
      l.debug('d');
      l.info('i');
      l.warn('w');
      l.error('e');
    };
    all(levelled(logger, 'info'));
    assert.deepEqual(lines.splice(0), ['info i', 'warn w', 'error e']);
    all(levelled(logger, 'silent'));
    assert.deepEqual(lines.splice(0), []);
    const traced = levelled(logger, 'trace');
    assert.equal(traced.tracing, true);
    assert.equal(levelled(logger, 'debug').tracing, false);
    all(traced);
    assert.equal(lines.length, 5);
    // A logger without `error` gets errors as warnings; other missing levels are skipped.
    const partial: string[] = [];
    all(levelled({ warn: (m) => void partial.push(m) }, 'trace'));
    assert.deepEqual(partial, ['w', 'e']);
  });

  it('logLevel: debug writes failed dials; the default writes no trace or debug line', async () => {
    s = await swarm();
    const quiet = recorder();
    const chatty = recorder();
    const a = await s.add('a', { logger: quiet.logger });
    const d = await s.add('d', { logger: chatty.logger, logLevel: 'debug' });
    s.network.refuseDials('b');
    await s.add('b');
    for (const engine of [a, d]) {
      engine.addPeer('b', [s.network.address('b')]);
      await s.until(engine.openStream('b', '/x').catch(() => {}));
    }
    assert.deepEqual(quiet.lines, []);
    assert.ok(chatty.lines.some((l) => /^debug peerline d: dial to b failed: CONNECT_REFUSED/.test(l)), chatty.lines.join('\n'));
    assert.ok(!chatty.lines.some((l) => l.startsWith('trace')));
  });

  it('refuses a logger that is not one and an unknown level, naming them', async () => {
    s = await swarm();
    await assert.rejects(s.add('x', { logger: 'stderr' as never }), /^TypeError: config\.logger must be an object/);
    await assert.rejects(s.add('y', { logger: { warn: 'loud' } as never }), /^TypeError: config\.logger\.warn must be a function/);
    await assert.rejects(s.add('z', { logLevel: 'verbose' as never }), /^TypeError: config\.logLevel must be one of "trace", "debug", "info", "warn", "error", "silent", got "verbose"/);
  });
});
