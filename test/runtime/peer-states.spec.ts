import { strict as assert } from 'node:assert';
import type { ConnectionState } from '../../runtime/index.js';
import { PeerStates } from '../../runtime/peer-states.js';

function host(states: Map<string, ConnectionState>): PeerStates {
  return new PeerStates({ stateOf: (peerId) => states.get(peerId), states: () => states.entries() });
}

describe('peer state observables', () => {
  it('keeps nothing for a peer once its subscribers are gone: 1000 peers watched and dropped leave 0', () => {
    const states = new Map<string, ConnectionState>([['p1', 'ready']]);
    const p = host(states);
    const subscriptions = Array.from({ length: 1_000 }, (_, i) => p.state$(`p${i}`).subscribe(() => {}));
    assert.equal(p.watchedPeers, 1_000);
    for (const subscription of subscriptions) subscription.unsubscribe();
    assert.equal(p.watchedPeers, 0);
    // Changes to peers nobody watches cost a map lookup and nothing else.
    for (let i = 0; i < 1_000; i++) p.changed(`p${i}`, 'connecting');
    assert.equal(p.watchedPeers, 0);
  });

  it('a machine that ends completes its watchers and drops them', () => {
    const states = new Map<string, ConnectionState>([['p', 'ready']]);
    const p = host(states);
    const seen: string[] = [];
    let done = 0;
    for (let i = 0; i < 2; i++) p.state$('p').subscribe({ next: (x) => seen.push(x), complete: () => (done += 1) });
    p.changed('p', 'closed');
    states.delete('p');
    p.ended('p');
    assert.deepEqual(seen, ['ready', 'ready', 'closed', 'closed']);
    assert.equal(done, 2);
    assert.equal(p.watchedPeers, 0);
  });

  it('peers$ coalesces the changes of one turn into one map', async () => {
    const states = new Map<string, ConnectionState>();
    const p = host(states);
    const maps: number[] = [];
    p.peers$.subscribe((m) => maps.push(m.size));
    for (let i = 0; i < 100; i++) {
      states.set(`p${i}`, 'connecting');
      p.changed(`p${i}`, 'connecting');
    }
    await Promise.resolve();
    assert.deepEqual(maps, [0, 100]);
  });
});
