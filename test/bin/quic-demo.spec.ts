/**
 * The QUIC demo (what `npm start` runs), in-process and short: 4 agents for
 * 7 s with the chaos schedule on. It must answer every request, crash
 * nothing, carry out every chaos step, serve the inspector page, and leave no
 * socket, server or connection behind.
 */
import assert from 'node:assert/strict';
import { runQuicDemo } from '../../bin/quic-demo.js';

/** Open UDP sockets and TCP servers/sockets in this process, by kind. */
function openHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) {
    if (/UDP|TCP/.test(kind)) counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

describe('QUIC demo (bin/quic-demo.ts)', function () {
  this.timeout(20_000);

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
    assert.ok(Object.keys(report.requests.byCode).length >= 1, `failure codes: ${JSON.stringify(report.requests.byCode)}`);
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
    assert.ok(progress.length >= 5, `progress lines: ${progress.length}`);
    assert.match(progress.at(-1)!, /ok \d+ {2}failed \d+/);

    assert.match(report.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.ok(page !== undefined, 'the page URL was announced');
    const served = await page;
    assert.equal(served.status, 200);
    assert.match(served.body, /peerline/);

    assert.deepEqual(report.leftover, []);
    assert.equal(report.interrupted, false);
    // Closed sockets leave the list on a later tick.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(openHandles(), before);
  });

  it('ends early and cleanly when its signal is aborted', async function () {
    const before = openHandles();
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 1500);
    const started = Date.now();
    const report = await runQuicDemo({ peers: 3, durationS: 60, seed: 1, chaos: true, port: 0, out: () => {}, signal: stop.signal });
    assert.ok(Date.now() - started < 8000, `took ${Date.now() - started} ms`);
    assert.equal(report.interrupted, true);
    assert.equal(report.crashes, 0);
    assert.equal(report.requests.unanswered, 0);
    assert.deepEqual(report.leftover, []);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(openHandles(), before);
  });
});
