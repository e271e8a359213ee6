import { strict as assert } from 'node:assert';
import { tour } from '../../examples/tour.js';

describe('the README tour (examples/tour.ts)', () => {
  it('echoes over the memory network, reports a typed error, and stops cleanly', async () => {
    const lines: string[] = [];
    const replies = await tour((line) => lines.push(line));
    assert.deepEqual(replies.join(''), 'hello bob');
    assert.ok(lines.includes('unknown protocol: STREAM_REJECTED'), lines.join('\n'));
    assert.deepEqual(
      lines.filter((l) => l.startsWith('alice: bob')),
      [
        'alice: bob new -> connecting',
        'alice: bob connecting -> handshaking',
        'alice: bob handshaking -> ready',
        'alice: bob ready -> draining',
        'alice: bob draining -> closed',
      ],
    );
  });
});
