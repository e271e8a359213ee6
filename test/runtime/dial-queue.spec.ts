import { strict as assert } from 'node:assert';
import sinon from 'sinon';
import { DialQueue } from '../../runtime/index.js';

describe('DialQueue', () => {
  it('grants up to the concurrency, queues in order, refuses past the limit', () => {
    const q = new DialQueue(2, 2);
    const granted: number[] = [];
    const refused = sinon.spy();
    const releases = [1, 2, 3, 4, 5].map((n) => q.acquire(() => granted.push(n), refused));
    assert.deepEqual(granted, [1, 2]);
    assert.equal(q.waiting, 2);
    assert.equal(refused.callCount, 1);
    releases[0]!();
    assert.deepEqual(granted, [1, 2, 3]);
    releases[0]!(); // idempotent
    assert.equal(q.active, 2);
    releases[3]!(); // leaves the queue without being granted
    releases[1]!();
    assert.deepEqual(granted, [1, 2, 3]);
    assert.equal(q.active, 1);
    assert.equal(q.waiting, 0);
    releases[2]!();
    assert.equal(q.active, 0);
  });
});
