/**
 * The QUIC demo (what `npm start` runs), in-process and short: 4 agents for
 * 7 s with the chaos schedule on. It must answer every request, crash
 * nothing, carry out every chaos step, serve the inspector page, and leave no
 * socket, server or connection behind.
 *
 * Nothing here depends on how fast the machine is: which requests meet a
 * chaos step, how many progress lines a busy event loop prints and how long
 * the shutdown takes all vary with load, so the tests assert what every run
 * must show (each failure typed, each chaos step done in order, the run cut
 * short before its first chaos step) and wait for sockets by polling with a
 * bounded deadline.
 */
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { runQuicDemo, type QuicDemoReport } from '../../bin/quic-demo.js';
import { eventually } from '../fixtures/hostile-peer.js';

/** Open UDP sockets and TCP servers/sockets in this process, by kind. */
function openHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) {
    if (/UDP|TCP/.test(kind)) counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

/** Fails unless the open handles come back to `before`: a closed socket leaves the list on a later turn of the loop, later still on a busy machine. */
async function assertHandlesBackTo(before: Record<string, number>): Promise<void> {
  await eventually(() => isDeepStrictEqual(openHandles(), before), 10_000);
  assert.deepEqual(openHandles(), before);
}

/** A run cut short by its signal: none of its chaos schedule ran, nothing crashed, every request answered, everything closed. */
async function assertInterruptedCleanly(report: QuicDemoReport, before: Record<string, number>): Promise<void> {
  assert.equal(report.interrupted, true);
  assert.deepEqual(report.chaos, []);
  assert.equal(report.crashes, 0);
  assert.equal(report.requests.unanswered, 0);
  assert.deepEqual(report.leftover, []);
  await assertHandlesBackTo(before);
}

/** A failure the demo may count: a PeerlineError's code, or a transport error of the echo exchange. */
const TYPED_FAILURE = /^(?!UNTYPED$|WRONG_ECHO$)[A-Z][A-Z_]+$/;

describe('QUIC demo (bin/quic-demo.ts)', function () {
  // A deadline, not a measure: the first run lasts 7 s of wall time plus at
  // most 4 s of settling whatever the load; the rest is CPU work (identities,
  // TLS, engines) that a busy machine stretches several times over.
  this.timeout(60_000);

  it('4 agents, 7 s, chaos on: every request answered, no crash, every chaos step done, page served, all closed', async function () {
    const before = openHandles();
    let page: Promise<{ status: number; body: string }> | undefined;
    const lines: string[] = [];
    const progress: string[] = [];
    const report = await runQuicDemo({
      peers: 4,
      durationS: 7,
      seed: 3,
      chaos: true,
      port: 0,
      out: (line) => lines.push(line),
      progress: (line) => progress.push(line),
      onServing: (url) => {
        page = fetch(url, { headers: { connection: 'close' } }).then(async (response) => ({ status: response.status, body: await response.text() }));
      },
    });

    assert.equal(report.crashes, 0);
    assert.equal(report.requests.unanswered, 0);
    assert.ok(report.requests.ok > 0, `ok ${report.requests.ok}`);
    assert.equal(report.requests.failed, Object.values(report.requests.byCode).reduce((a, b) => a + b, 0));
    // Whether a request meets the partition or the stopped agent depends on
    // timing; that every failure there is carries a typed code does not.
    for (const code of Object.keys(report.requests.byCode)) assert.match(code, TYPED_FAILURE, `failure codes: ${JSON.stringify(report.requests.byCode)}`);
    assert.ok(report.transitions > 0);
    assert.deepEqual(
      report.chaos.map((step) => step.replace(/^[\d.]+s /, '')),
      [
        'alice drains its connection to bob',
        'partition carol | dave',
        'heal partition carol | dave',
        'stop bob',
        'restart bob',
      ],
    );
    assert.equal(lines.filter((l) => l.startsWith('-- chaos at')).length, 5);
    // Once a second while the run lasts: the first one is due well before the
    // end; how many more a busy event loop fits into 7 s depends on the load.
    assert.ok(progress.length >= 1, 'a progress line');
    for (const line of progress) assert.match(line, /^ *\d+s {2}ok \d+ {2}failed \d+ {2}in flight \d+ {2}agents up \d\/4 {2}peers: /);

    assert.match(report.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.ok(page !== undefined, 'the page URL was announced');
    const served = await page;
    assert.equal(served.status, 200);
    assert.match(served.body, /peerline/);

    assert.deepEqual(report.leftover, []);
    assert.equal(report.interrupted, false);
    await assertHandlesBackTo(before);
  });

  it('ends early and cleanly when its signal is aborted', async function () {
    const before = openHandles();
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 1500);
    const report = await runQuicDemo({ peers: 3, durationS: 60, seed: 1, chaos: true, port: 0, out: () => {}, signal: stop.signal });
    // Its first chaos step is due 9 s into the run, a timer armed after the
    // abort's: the abort always comes first, however slow the machine, so
    // nothing of the schedule may have run.
    await assertInterruptedCleanly(report, before);
  });

  it('a signal aborted before the agents are up (a slow start) still ends the run as interrupted', async function () {
    const before = openHandles();
    const report = await runQuicDemo({ peers: 2, durationS: 60, seed: 1, chaos: false, port: 0, out: () => {}, signal: AbortSignal.abort() });
    await assertInterruptedCleanly(report, before);
  });
});
