import { strict as assert } from 'node:assert';
import * as errors from '../../runtime/errors.js';

/** A second instance of the errors module, as an application with two copies of the package has. */
async function secondCopy(): Promise<typeof errors> {
  return (await import(new URL(`../../runtime/errors.ts?copy=${Date.now()}`, import.meta.url).href)) as typeof errors;
}

describe('PeerlineError', () => {
  it('toPeerlineError builds the class of the code, with the peer and the close code', () => {
    const error = errors.toPeerlineError({ code: 'HEARTBEAT_TIMEOUT', message: 'no pong', closeCode: 3 }, 'peer-a');
    assert.ok(error instanceof errors.HeartbeatTimeoutError);
    assert.ok(error instanceof errors.PeerlineError);
    assert.ok(error instanceof Error);
    assert.equal(error.code, 'HEARTBEAT_TIMEOUT');
    assert.equal(error.peerId, 'peer-a');
    assert.equal(error.closeCode, 3);
    assert.ok(!(error instanceof errors.ConnectTimeoutError));
  });

  it('is recognised across two copies of the package (a process-wide brand)', async () => {
    const other = await secondCopy();
    assert.notEqual(other.PeerlineError, errors.PeerlineError, 'the test needs two module instances');
    const theirs = other.toPeerlineError({ code: 'CONNECT_TIMEOUT', message: 'dial timed out' }, 'peer-b');
    assert.equal(errors.isPeerlineError(theirs), true);
    assert.ok(theirs instanceof errors.PeerlineError);
    assert.ok(theirs instanceof errors.ConnectTimeoutError, 'a subclass stands for its code');
    assert.ok(!(theirs instanceof errors.AbortedError));
    const ours = errors.toPeerlineError({ code: 'ABORTED', message: 'aborted' });
    assert.equal(other.isPeerlineError(ours), true);
    assert.ok(ours instanceof other.AbortedError);
  });

  it('is not fooled by look-alikes', () => {
    const lookAlike = Object.assign(new Error('x'), { code: 'ABORTED', name: 'PeerlineError' });
    assert.equal(errors.isPeerlineError(lookAlike), false);
    assert.ok(!(lookAlike instanceof errors.PeerlineError));
    assert.ok(!(lookAlike instanceof errors.AbortedError));
    for (const value of [null, undefined, 'ABORTED', 7, {}, { code: 'ABORTED' }]) {
      assert.equal(errors.isPeerlineError(value), false);
      assert.ok(!((value as object) instanceof errors.PeerlineError));
    }
  });
});
