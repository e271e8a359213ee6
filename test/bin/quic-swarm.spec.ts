/**
 * The QUIC swarm the demo and the soak run: an agent restarted while its
 * graceful stop still drains comes back on its own port.
 */
import assert from 'node:assert/strict';
import { LIVELY_TIMINGS, QuicSwarm } from '../../bin/quic-swarm.js';
import { seededRandom } from '../../runtime/index.js';

describe('QUIC swarm (bin/quic-swarm.ts)', function () {
  this.timeout(30_000);

  it('start() right after a stop() still draining a stream waits for it, and takes the same port', async function () {
    const swarm = await QuicSwarm.create({ names: ['alice', 'bob'], protocol: '/echo', timings: LIVELY_TIMINGS, random: seededRandom(1) });
    try {
      await swarm.startAll();
      const port = swarm.adapters[1]!.port;
      // A stream in flight that nobody ends: bob's graceful stop drains it until its deadline (1.5 s).
      const held = await swarm.engine('alice')!.openStream(swarm.peerId('bob'), '/echo');
      const stopping = swarm.stop('bob');
      assert.equal(swarm.engine('bob'), undefined);
      await swarm.start('bob');
      await stopping;
      held.abort('done');
      assert.equal(swarm.adapters.length, 3, 'one new adapter for bob');
      assert.equal(swarm.adapters[2]!.port, port, 'bob is back on its own port');
      assert.equal(swarm.engine('bob')?.status, 'running');
    } finally {
      assert.deepEqual(await swarm.close(), []);
    }
  });
});
