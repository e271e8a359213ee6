import { strict as assert } from 'node:assert';
import { ByteQueue } from '../../protocol/byte-queue.js';

describe('ByteQueue', () => {
  it('reads exact counts across chunks, and views the first chunk when it holds them', () => {
    const queue = new ByteQueue();
    const first = Uint8Array.of(1, 2, 3);
    queue.push(first);
    queue.push(new Uint8Array(0));
    queue.push(Uint8Array.of(4, 5));
    assert.equal(queue.length, 5);
    const head = queue.peek(2);
    assert.deepEqual([...head], [1, 2]);
    assert.equal(head.buffer, first.buffer, 'a peek inside the first chunk is a view');
    assert.deepEqual([...queue.peek(4)], [1, 2, 3, 4]);
    assert.equal(queue.length, 5, 'peek removes nothing');
    assert.deepEqual([...queue.take(2)], [1, 2]);
    assert.deepEqual([...queue.take(2)], [3, 4]);
    assert.equal(queue.length, 1);
    assert.throws(() => queue.take(2), RangeError);
    assert.deepEqual(queue.drain().map((c) => [...c]), [[5]]);
    assert.equal(queue.length, 0);
  });

  it('takeParts hands out views of the chunks without copying', () => {
    const queue = new ByteQueue();
    const a = Uint8Array.of(1, 2, 3);
    const b = Uint8Array.of(4, 5, 6);
    queue.push(a);
    queue.push(b);
    const parts = queue.takeParts(4);
    assert.deepEqual(parts.map((p) => [...p]), [[1, 2, 3], [4]]);
    assert.equal(parts[0], a);
    assert.equal(parts[1]!.buffer, b.buffer);
    assert.deepEqual([...queue.take(2)], [5, 6]);
    assert.deepEqual(queue.takeParts(0), []);
    assert.throws(() => queue.takeParts(1), RangeError);
  });
});
