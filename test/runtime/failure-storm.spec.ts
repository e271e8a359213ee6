import { strict as assert } from 'node:assert';
import { seededRandom } from '../../runtime/index.js';
import { escapedErrors } from '../fixtures/hooks.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';

/**
 * Normal operations run concurrently with connection failures of every kind
 * (Polykey issue 592 asked for exactly this test). Whatever happens: no
 * error reaches the process, every request is answered exactly once, and
 * stopping leaves nothing behind.
 */
describe('failure storm', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
  });

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 4 agents, 600 requests under random faults; every request answered once, nothing escapes`, async () => {
      const random = seededRandom(seed);
      s = await swarm({
        seed,
        latencyMs: 2,
        defaults: {
          heartbeat: { intervalMs: 500, timeoutMs: 200, misses: 2 },
          connectTimeoutMs: 400,
          handshakeTimeoutMs: 400,
          streamOpenTimeoutMs: 400,
          drainDeadlineMs: 300,
          idleTimeoutMs: 2000,
          retry: { strategy: 'exponential', initialDelayMs: 100, maxAttempts: 3 },
        },
      });
      const names = ['a', 'b', 'c', 'd'];
      for (const n of names) {
        const e = await s.add(n);
        e.handle('/echo', echo);
        for (const m of names) if (m !== n) e.addPeer(m, [s.network.address(m)], { pinned: n === 'a' && m === 'b' });
      }
      const pick = (): string => names[Math.floor(random() * names.length)]!;
      let issued = 0;
      const answers = new Map<number, number>();
      const byCode: Record<string, number> = {};
      const count = (code: string): void => void (byCode[code] = (byCode[code] ?? 0) + 1);
      const faults: Array<() => void> = [
        () => s.network.drop(pick(), pick()),
        () => s.network.partition([pick()], [pick()]),
        () => s.network.heal(),
        () => s.network.ackFault(pick(), random() < 0.5 ? { lose: true } : { delayMs: 300 }),
        () => s.network.ackFault(pick(), null),
        () => s.network.stallHandshake(pick(), random() < 0.5),
        () => void s.engine(pick()).drain(pick()),
        () => void s.engine(pick()).forceClose(pick(), 'storm'),
      ];
      for (let step = 0; step < 300; step++) {
        for (let k = 0; k < 2; k++) {
          const from = pick();
          let to = pick();
          if (to === from) to = names[(names.indexOf(from) + 1) % names.length]!;
          const id = issued++;
          const controller = new AbortController();
          if (random() < 0.1) s.clock.setTimeout(() => controller.abort(), Math.floor(random() * 50));
          s.engine(from)
            .openStream(to, '/echo', { signal: controller.signal, timeoutMs: 1000 })
            .then(
              (stream) => {
                answers.set(id, (answers.get(id) ?? 0) + 1);
                count('ok');
                stream.close();
              },
              (error: { code: string }) => {
                answers.set(id, (answers.get(id) ?? 0) + 1);
                count(error.code);
              },
            );
        }
        if (random() < 0.15) faults[Math.floor(random() * faults.length)]!();
        await s.advance(Math.floor(random() * 20));
      }
      s.network.heal();
      for (const n of names) {
        s.network.ackFault(n, null);
        s.network.stallHandshake(n, false);
      }
      await s.advance(3000);
      assert.equal(issued, 600);
      assert.equal(answers.size, 600, `${600 - answers.size} requests never answered`);
      assert.ok([...answers.values()].every((n) => n === 1), 'a request was answered twice');
      // The storm really storms: plenty succeed, and failures come in several kinds.
      assert.ok((byCode.ok ?? 0) >= 100, JSON.stringify(byCode));
      assert.ok(Object.keys(byCode).length >= 4, JSON.stringify(byCode));
      for (const n of names) {
        const m = s.engine(n).metrics();
        assert.equal(m.internalErrors, 0, `${n}: ${s.warnings.join('\n')}`);
        assert.equal(m.pendingRequests, 0);
      }
      assert.deepEqual(escapedErrors(), []);
    });
  }
});
