import { strict as assert } from 'node:assert';
import { PruneIndex, type Priority } from '../../runtime/prune-index.js';

interface Peer {
  readonly peerId: string;
}

function setup(): { index: PruneIndex<Peer>; priorities: Map<string, Priority>; peer: (id: string) => Peer; drain: () => string[] } {
  const priorities = new Map<string, Priority>();
  const index = new PruneIndex<Peer>((peerId) => priorities.get(peerId));
  const peers = new Map<string, Peer>();
  const peer = (id: string): Peer => {
    let p = peers.get(id);
    if (p === undefined) {
      p = { peerId: id };
      peers.set(id, p);
    }
    return p;
  };
  const drain = (): string[] => {
    const order: string[] = [];
    for (let p = index.pick(); p !== undefined; p = index.pick()) {
      order.push(p.peerId);
      index.remove(p);
    }
    return order;
  };
  return { index, priorities, peer, drain };
}

describe('prune index', () => {
  it('backing-off peers first, then idle ones by priority, oldest first within a priority', () => {
    const { index, priorities, peer, drain } = setup();
    priorities.set('hi', { value: 5, protected: false });
    priorities.set('neg', { value: -1, protected: false });
    for (const id of ['a', 'hi', 'b', 'neg', 'c']) index.update(peer(id), 'idle');
    index.update(peer('z'), 'errored');
    index.update(peer('b'), undefined); // b got busy...
    index.update(peer('b'), 'idle'); // ...and idle again: now the newest
    assert.deepEqual(drain(), ['z', 'neg', 'a', 'c', 'b', 'hi']);
    assert.equal(index.size, 0);
  });

  it('a priority change keeps the peer\'s place in time; protected peers are never picked until unprotected', () => {
    const { index, priorities, peer, drain } = setup();
    for (const id of ['a', 'b', 'c', 'd']) index.update(peer(id), 'idle');
    priorities.set('a', { value: 1, protected: false });
    index.refresh(peer('a'));
    priorities.set('b', { value: 0, protected: true });
    index.refresh(peer('b'));
    priorities.set('d', { value: 1, protected: false });
    index.refresh(peer('d'));
    assert.equal(index.pick()?.peerId, 'c');
    priorities.set('b', { value: 1, protected: false });
    index.refresh(peer('b'));
    // In the bucket of 1: a, b, d in the order they became idle.
    assert.deepEqual(drain(), ['c', 'a', 'b', 'd']);
  });

  it('update with the same kind changes nothing; leaving and removing unlink in the middle of a list', () => {
    const { index, peer, drain } = setup();
    for (const id of ['a', 'b', 'c', 'd', 'e']) index.update(peer(id), 'idle');
    index.update(peer('a'), 'idle');
    index.update(peer('c'), undefined);
    index.remove(peer('e'));
    index.remove(peer('nobody'));
    assert.equal(index.size, 3);
    assert.deepEqual(drain(), ['a', 'b', 'd']);
  });
});
