// lib/poll.ts: the one polling loop behind every downstream wait. Most
// cases run on a fake clock (time moves only when the loop pauses), so no
// assertion depends on how fast the machine is.

import t from 'tap';

import { agentTaskFailed } from '../../lib/errors.js';
import { poll, type PollClock } from '../../lib/clients/poll.js';
import { isSapiError, rejection } from '../lib/model-ctx.js';

/** Time starts at 0 and moves only by the loop's own pauses, which are recorded. */
function fakeClock(): PollClock & { time: number; pauses: number[] } {
    const clock = {
        time: 0,
        pauses: [] as number[],
        now: () => clock.time,
        sleep: (ms: number, signal: AbortSignal | undefined): Promise<void> => {
            signal?.throwIfAborted();
            clock.pauses.push(ms);
            clock.time += ms;
            return Promise.resolve();
        },
    };
    return clock;
}

/** A check that finds nothing `misses` times, then `value`; records when it ran. */
function counting<T>(misses: number, value: T, clock: { now(): number }): { check: () => Promise<T | undefined>; at: number[] } {
    const at: number[] = [];
    return {
        at,
        check: async () => {
            at.push(clock.now());
            return at.length > misses ? value : undefined;
        },
    };
}

t.test('the first check runs at once; the first value ends the wait', async (t) => {
    const clock = fakeClock();
    const c = counting(0, 'done', clock);
    t.equal(await poll({ intervalMs: 100, deadlineMs: 1000, check: c.check, clock }), 'done');
    t.strictSame(c.at, [0]);
    t.strictSame(clock.pauses, [], 'no pause before the first check or after the last');
});

t.test('checks are an interval apart until one finds a value', async (t) => {
    const clock = fakeClock();
    const c = counting(3, { ok: true }, clock);
    t.strictSame(await poll({ intervalMs: 100, deadlineMs: 1000, check: c.check, clock }), { ok: true });
    t.strictSame(c.at, [0, 100, 200, 300]);
    t.strictSame(clock.pauses, [100, 100, 100]);
});

t.test('only undefined means "not yet": 0, false, "" and null are values', async (t) => {
    const clock = fakeClock();
    for (const v of [0, false, '', null]) {
        t.equal(await poll<unknown>({ intervalMs: 10, deadlineMs: 100, check: async () => v, clock }), v);
    }
    t.strictSame(clock.pauses, []);
});

t.test('the last pause is cut short so one check runs at the deadline; then the timeout error', async (t) => {
    const clock = fakeClock();
    const c = counting(Infinity, 'never', clock);
    let built = 0;
    const err = await rejection(
        poll({
            intervalMs: 100,
            deadlineMs: 250,
            check: c.check,
            clock,
            onTimeout: () => {
                built += 1;
                return new Error(`gave up after ${c.at.length} checks`);
            },
        }),
    );
    t.strictSame(c.at, [0, 100, 200, 250]);
    t.strictSame(clock.pauses, [100, 100, 50]);
    t.equal(built, 1, 'the timeout error is built once, when needed');
    t.match(err, { message: 'gave up after 4 checks' }, 'it sees the state the checks left');
});

t.test('a value found by the check at the deadline wins over the timeout', async (t) => {
    const clock = fakeClock();
    const c = counting(3, 'just in time', clock);
    t.equal(await poll({ intervalMs: 100, deadlineMs: 250, check: c.check, clock, onTimeout: () => new Error('late') }), 'just in time');
    t.strictSame(c.at, [0, 100, 200, 250]);
});

t.test('a deadline of 0: one check, then the timeout, no pause', async (t) => {
    const clock = fakeClock();
    const c = counting(Infinity, 1, clock);
    await rejection(poll({ intervalMs: 100, deadlineMs: 0, check: c.check, clock }));
    t.strictSame(c.at, [0]);
    t.strictSame(clock.pauses, []);
});

t.test('a check that overruns the deadline is not followed by another', async (t) => {
    const clock = fakeClock();
    let checks = 0;
    const slow = async (): Promise<undefined> => {
        checks += 1;
        clock.time += 400;
        return undefined;
    };
    await rejection(poll({ intervalMs: 100, deadlineMs: 250, check: slow, clock }));
    t.equal(checks, 1);
    t.strictSame(clock.pauses, []);
});

t.test('without onTimeout: 504 TaskTimeoutError "<what> timed out after <n>s"', async (t) => {
    const clock = fakeClock();
    const err = await rejection(poll({ intervalMs: 100, deadlineMs: 1500, check: async () => undefined, what: 'VMAPI job 42', clock }));
    isSapiError(t, err, 504, 'TaskTimeoutError', 'VMAPI job 42 timed out after 1.5s');
    isSapiError(
        t,
        await rejection(poll({ intervalMs: 1, deadlineMs: 0, check: async () => undefined, clock })),
        504,
        'TaskTimeoutError',
        'wait timed out after 0s',
    );
});

t.test('a check that throws ends the wait with its error: no more checks, no timeout error', async (t) => {
    const clock = fakeClock();
    const boom = agentTaskFailed('task failed');
    let checks = 0;
    const err = await rejection(
        poll({
            intervalMs: 100,
            deadlineMs: 1000,
            clock,
            check: async () => {
                checks += 1;
                if (checks === 2) {
                    throw boom;
                }
                return undefined;
            },
            onTimeout: () => {
                t.fail('not a timeout');
                return new Error('timeout');
            },
        }),
    );
    t.equal(err, boom, 'the very error, unwrapped');
    t.equal(checks, 2);
});

t.test("tolerated errors are the check's own business: caught, counted, polled again", async (t) => {
    const clock = fakeClock();
    let errors = 0;
    let calls = 0;
    const flaky = async (): Promise<string | undefined> => {
        calls += 1;
        try {
            if (calls <= 3) {
                throw new Error(`transient ${calls}`);
            }
            errors = 0;
            return 'recovered';
        } catch (err) {
            if (++errors > 5) {
                throw err;
            }
            return undefined;
        }
    };
    t.equal(await poll({ intervalMs: 10, deadlineMs: 1000, check: flaky, clock }), 'recovered');
    t.equal(calls, 4);
});

t.test("abort: before the first check, the signal's reason; no check runs", async (t) => {
    const clock = fakeClock();
    const ac = new AbortController();
    const reason = new Error('shutting down');
    ac.abort(reason);
    let checks = 0;
    const err = await rejection(
        poll({
            intervalMs: 10,
            deadlineMs: 1000,
            signal: ac.signal,
            clock,
            check: async () => {
                checks += 1;
                return undefined;
            },
        }),
    );
    t.equal(err, reason);
    t.equal(checks, 0);
});

t.test('abort between checks: the wait stops before the next check', async (t) => {
    const clock = fakeClock();
    const ac = new AbortController();
    let checks = 0;
    const err = await rejection(
        poll({
            intervalMs: 10,
            deadlineMs: 1000,
            signal: ac.signal,
            clock,
            check: async () => {
                checks += 1;
                if (checks === 2) {
                    ac.abort();
                }
                return undefined;
            },
        }),
    );
    t.equal(checks, 2);
    t.match(err, { name: 'AbortError' });
});

t.test('the real clock: short intervals poll until the value; an abort cuts a long pause short', async (t) => {
    let checks = 0;
    const value = await poll({
        intervalMs: 2,
        deadlineMs: 60_000,
        check: async () => (++checks === 3 ? 'three' : undefined),
    });
    t.equal(value, 'three');
    t.equal(checks, 3);

    const ac = new AbortController();
    const waiting = poll({
        intervalMs: 60 * 60 * 1000,
        deadlineMs: 2 * 60 * 60 * 1000,
        signal: ac.signal,
        check: async () => {
            setImmediate(() => ac.abort());
            return undefined;
        },
    });
    const err = await rejection(waiting);
    t.match(err, { name: 'AbortError' }, 'an hour-long pause ends with the abort');

    const timedOut = await rejection(poll({ intervalMs: 1, deadlineMs: 5, check: async () => undefined, what: 'quick' }));
    isSapiError(t, timedOut, 504, 'TaskTimeoutError', 'quick timed out after 0.005s');
});
