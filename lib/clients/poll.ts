// One polling loop for every wait on a downstream service (a CNAPI task, an
// agent showing up in server.agents, a VMAPI job).
//
// The rules: the first check runs at once; after a check that found
// nothing, the loop pauses for the interval, cut short so that one last
// check runs at the deadline; a check still finding nothing at or after
// the deadline ends the wait with the timeout error. A check that throws
// ends the wait with that error: a check that tolerates some errors catches
// them itself (and keeps its own count) and returns undefined to poll
// again. An abort signal is checked before every check and cuts a pause
// short; either way the wait rejects (with the signal's reason before a
// check, with an AbortError during a pause).

import { setTimeout as sleep } from 'node:timers/promises';

import { secondsText } from './http.js';
import { taskTimeout } from '../errors.js';

/** Time as the loop sees it; tests substitute their own. */
export interface PollClock {
    now(): number;
    sleep(ms: number, signal: AbortSignal | undefined): Promise<void>;
}

export const realClock: PollClock = {
    now: () => Date.now(),
    sleep: (ms, signal) => sleep(ms, undefined, signal ? { signal } : {}),
};

export interface PollSpec<T> {
    /** Pause between two checks. */
    intervalMs: number;
    /** The whole wait, counted from the call. */
    deadlineMs: number;
    /** One look: a value (anything but undefined) ends the wait with it; undefined polls again. */
    check: () => Promise<T | undefined>;
    /** What is awaited, for the default timeout error ("<what> timed out after <n>s"). */
    what?: string;
    /** The timeout error, built when the deadline passes (it may describe the last state seen). */
    onTimeout?: () => Error;
    signal?: AbortSignal | undefined;
    clock?: PollClock;
}

/** Runs `check` until it gives a value, it throws, the deadline passes or the signal aborts. */
export async function poll<T>(spec: PollSpec<T>): Promise<T> {
    const clock = spec.clock ?? realClock;
    const deadline = clock.now() + spec.deadlineMs;
    for (;;) {
        spec.signal?.throwIfAborted();
        const found = await spec.check();
        if (found !== undefined) {
            return found;
        }
        const now = clock.now();
        if (now >= deadline) {
            throw spec.onTimeout ? spec.onTimeout() : taskTimeout(`${spec.what ?? 'wait'} timed out after ${secondsText(spec.deadlineMs)}`);
        }
        await clock.sleep(Math.min(spec.intervalMs, deadline - now), spec.signal);
    }
}
