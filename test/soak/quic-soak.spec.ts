/**
 * The chaos soak over real QUIC (`npm run soak`): the 60-second run CI does,
 * in-process, and the pieces that judge and report a run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { parseSoakArgs } from '../../soak/cli.js';
import { FAULT_KINDS } from '../../soak/schedule.js';
import { activeResources, formatResult, leakedResources, runSoak, verdict, type SoakResult } from '../../soak/world.js';

/** A result of a run where everything went right, to break one field at a time. */
function cleanResult(): SoakResult {
  return {
    seed: 1,
    engines: 5,
    durationMs: 60_000,
    elapsedMs: 61_000,
    schedule: { faults: 1, hash: '0123456789abcdef', byKind: { restart: 1, partition: 0, loss: 0, delay: 0, drain: 0, forceClose: 0 }, head: [] },
    applied: { restart: 1, partition: 0, loss: 0, delay: 0, drain: 0, forceClose: 0 },
    skipped: 0,
    requests: { sent: 10, ok: 9, failed: 1, byCode: { CONNECT_TIMEOUT: 1 }, wrongEcho: 0, doubleAnswers: 0, untyped: [], unanswered: 0, unansweredAfterStop: 0 },
    unansweredDetails: [],
    crashes: 0,
    unhandledRejections: 0,
    escaped: [],
    hungSteps: [],
    handles: { before: { PipeWrap: 2 }, after: { PipeWrap: 2 }, leaked: {} },
    heap: { before: 10e6, after: 11e6, peak: 50e6, gc: true },
    leftover: [],
    warnings: 0,
    warningLines: [],
    libraryErrors: 0,
    internalErrors: 0,
    transitions: 100,
    retries: 3,
    interrupted: false,
  };
}

describe('QUIC chaos soak (soak/)', function () {
  describe('judging a run', function () {
    it('a clean run passes, and each kind of failure fails it with its own line', function () {
      assert.deepEqual(verdict(cleanResult()), []);
      assert.match(formatResult(cleanResult()), /result\s+PASS/);
      const broken: [string, (r: SoakResult) => void, RegExp][] = [
        ['crash', (r) => void (r.crashes = 1), /1 uncaught exception/],
        ['rejection', (r) => void (r.unhandledRejections = 2), /2 unhandled rejection/],
        ['handle', (r) => void (r.handles.leaked = { UDPWRAP: 1 }), /leaked handles: UDPWRAP \+1/],
        ['unanswered', (r) => void (r.requests.unanswered = 3), /3 request\(s\) unanswered after the grace/],
        ['unanswered after stop', (r) => void (r.requests.unansweredAfterStop = 1), /unanswered after every engine stopped/],
        ['wrong echo', (r) => void (r.requests.wrongEcho = 1), /1 wrong echo/],
        ['double answer', (r) => void (r.requests.doubleAnswers = 1), /answered more than once/],
        ['untyped', (r) => void (r.requests.byCode.UNTYPED = 4), /4 failure\(s\) without a typed error/],
        ['hung step', (r) => void (r.hungSteps = ['  1.0s  restart e1, down 1.0s']), /1 chaos step\(s\) did not end/],
        ['leftover', (r) => void (r.leftover = ['engine abc running']), /left open: engine abc running/],
        ['internal error', (r) => void (r.internalErrors = 2), /2 internal error\(s\) in the engines/],
        ['library error', (r) => void (r.libraryErrors = 1), /1 error\(s\) thrown inside @matrixai\/quic/],
      ];
      for (const [what, breakIt, message] of broken) {
        const result = cleanResult();
        breakIt(result);
        const failures = verdict(result);
        assert.equal(failures.length, 1, `${what}: ${failures.join('; ')}`);
        assert.match(failures[0]!, message);
        assert.match(formatResult(result), /result\s+FAIL: /);
      }
    });

    it('counts handles by type and names the types that grew', function () {
      assert.deepEqual(leakedResources({ Timeout: 2, UDPWRAP: 1 }, { Timeout: 2, UDPWRAP: 3, TCPWRAP: 1 }), { UDPWRAP: 2, TCPWRAP: 1 });
      assert.deepEqual(leakedResources({ Timeout: 2 }, { Timeout: 1 }), {});
      const counts = activeResources();
      assert.equal(
        Object.values(counts).reduce((a, b) => a + b, 0),
        process.getActiveResourcesInfo().length,
      );
    });

    it('reads its command line: --minutes or --seconds, --seed, --engines, --quiet', function () {
      assert.deepEqual(parseSoakArgs([]), { durationMs: 60_000, seed: 1, engines: 5, quiet: false });
      assert.deepEqual(parseSoakArgs(['--minutes', '3', '--seed', '9']), { durationMs: 180_000, seed: 9, engines: 5, quiet: false });
      assert.deepEqual(parseSoakArgs(['--seconds', '45', '--engines', '3', '--quiet']), { durationMs: 45_000, seed: 1, engines: 3, quiet: true });
      assert.throws(() => parseSoakArgs(['--minutes', '1', '--seconds', '5']), /not both/);
      assert.throws(() => parseSoakArgs(['--minutes', '0']), /--minutes must be/);
      assert.throws(() => parseSoakArgs(['--seed', '1.5']), /--seed must be/);
      assert.throws(() => parseSoakArgs(['--engines', '1']), /--engines must be/);
      assert.throws(() => parseSoakArgs(['--bogus']));
    });
  });

  describe('over QUIC on 127.0.0.1', function () {
    it('60 s, 5 engines, seed 1: no crash, no rejection, no leaked handle, every request answered, every echo right', async function () {
      this.timeout(120_000);
      // Mocha arms this test's timeout timer once the test function has
      // returned its promise: let it, so the run's handle baseline has it too.
      await new Promise((resolve) => setImmediate(resolve));
      const lines: string[] = [];
      const result = await runSoak({ seed: 1, durationMs: 60_000, engines: 5, out: (line) => lines.push(line) });
      const table = formatResult(result);
      assert.deepEqual(verdict(result), [], table);
      assert.equal(result.crashes, 0, table);
      assert.equal(result.unhandledRejections, 0, table);
      assert.deepEqual(result.handles.leaked, {}, table);
      assert.equal(result.requests.unanswered, 0, table);
      assert.equal(result.requests.unansweredAfterStop, 0, table);
      assert.equal(result.requests.wrongEcho, 0, table);
      assert.equal(result.requests.doubleAnswers, 0, table);
      assert.deepEqual(result.leftover, [], table);
      // Every request was counted once: ok or failed by code.
      const r = result.requests;
      assert.equal(r.ok + r.failed + r.wrongEcho, r.sent, table);
      assert.equal(Object.values(r.byCode).reduce((a, b) => a + b, 0), r.failed, table);
      assert.ok(r.byCode.UNTYPED === undefined, table);
      // Traffic flowed through the faults: 5 engines ask about 10 times a second each.
      assert.ok(r.ok >= 500, `ok ${r.ok}\n${table}`);
      assert.ok(r.ok > 4 * r.failed, `ok ${r.ok}, failed ${r.failed}\n${table}`);
      // The whole schedule was carried out (a drain or force close by a stopped engine is skipped).
      const applied = FAULT_KINDS.reduce((sum, kind) => sum + result.applied[kind], 0);
      assert.equal(applied + result.skipped, result.schedule.faults, table);
      for (const kind of FAULT_KINDS) assert.ok(result.applied[kind] > 0, `no ${kind} carried out\n${table}`);
      assert.ok(result.transitions > 0 && result.retries > 0, table);
      assert.ok(lines.some((line) => /restart e\d/.test(line)), 'fault lines were written');
      // Bounded by the test's timeout (a deadline): the run, the grace, and the
      // shutdown, each bounded; how long they take on a busy machine is no failure.
    });

    it('npm run soak: a short run prints the schedule and the table and exits 0', async function () {
      this.timeout(60_000);
      const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', 'soak/cli.ts', '--seconds', '5', '--engines', '3', '--seed', '4', '--quiet'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const killer = setTimeout(() => child.kill('SIGKILL'), 55_000);
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      clearTimeout(killer);
      assert.equal(code, 0, output);
      assert.match(output, /^schedule [0-9a-f]{16}: \d+ faults/m);
      assert.match(output, /requests ok\s+[1-9]\d*/);
      assert.match(output, /heap before\s+[\d.]+ MB\n/, 'heap read after a collection (--expose-gc)');
      assert.match(output, /handles leaked\s+none/);
      assert.match(output, /result\s+PASS/);
    });

    it('npm run soak: a bad argument exits 2 with the usage line', async function () {
      this.timeout(30_000);
      const child = spawn(process.execPath, ['--import', 'tsx', 'soak/cli.ts', '--engines', 'many'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const killer = setTimeout(() => child.kill('SIGKILL'), 25_000);
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      clearTimeout(killer);
      assert.equal(code, 2, output);
      assert.match(output, /--engines must be a whole number/);
      assert.match(output, /usage: npm run soak/);
    });
  });
});
