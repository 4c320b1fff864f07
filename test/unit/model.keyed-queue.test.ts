// KeyedQueue: tasks of one key run one after another, in the order queued,
// whether the one before failed or not; tasks of other keys do not wait.

import t from 'tap';

import { KeyedQueue } from '../../lib/model/keyed-queue.js';

/** A promise and the functions that settle it. */
function held<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
    let resolve!: (v: T) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
    });
    return { promise, resolve, reject };
}

t.test('one key: in order, one at a time, a failure does not stop the next', async (t) => {
    const q = new KeyedQueue();
    const log: string[] = [];
    const first = held();
    const a = q.run('k', async () => {
        log.push('a start');
        await first.promise;
        log.push('a end');
        throw new Error('a failed');
    });
    const b = q.run('k', async () => {
        log.push('b');
        return 'b done';
    });
    await new Promise((r) => setImmediate(r));
    t.same(log, ['a start'], 'b waits for a');
    first.resolve();
    await t.rejects(a, { message: 'a failed' }, 'a fails to its own caller');
    t.equal(await b, 'b done', 'b runs after it all the same');
    t.same(log, ['a start', 'a end', 'b']);
});

t.test('other keys do not wait', async (t) => {
    const q = new KeyedQueue();
    const gate = held();
    const slow = q.run('x', () => gate.promise);
    t.equal(await q.run('y', async () => 'y'), 'y', 'y ran while x was still running');
    gate.resolve();
    await slow;
});
