import { strict as assert } from 'node:assert';
import { abortCallbacks, onAbort } from '../../runtime/abort.js';

describe('abort fan-out', () => {
  it('one listener per signal; removing every registration takes it off; abort calls each once', () => {
    const controller = new AbortController();
    const calls: number[] = [];
    const offs = Array.from({ length: 50 }, (_, i) => onAbort(controller.signal, () => calls.push(i)));
    assert.equal(abortCallbacks(controller.signal), 50);
    offs[0]!();
    offs[0]!();
    assert.equal(abortCallbacks(controller.signal), 49);
    controller.abort();
    controller.abort();
    assert.equal(calls.length, 49);
    assert.equal(abortCallbacks(controller.signal), 0);
    const other = new AbortController();
    const off = onAbort(other.signal, () => calls.push(-1));
    off();
    other.abort();
    assert.equal(calls.includes(-1), false);
  });
});
