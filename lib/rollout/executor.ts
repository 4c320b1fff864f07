// Runs a rollout's pending items. Up to `concurrency` servers at once; on
// each server its items one after another, so cn-agent and config-agent
// are never upgraded beside another agent there (and cn-agent, whose
// upgrade restarts the task runner, goes last). A server busy with another
// agent operation is tried again a little later. Each item has a hard
// deadline (instance_timeout_ms) at which it is aborted and failed; a
// watchdog flags items running over stall_factor times the average of the
// finished ones. All times come from the injected clock.

import type Logger from 'bunyan';

import { hasCode } from '../errors.js';
import { every, sleep, type Clock, type Timer } from './clock.js';
import type { ItemPhase, Rollout, RolloutItem } from './types.js';

/** How long a busy server is left before its item is tried again. */
export const BUSY_RETRY_MS = 100;
/** How often running items are checked against the stall limit. */
export const WATCHDOG_MS = 250;

export interface ExecutorDeps {
    clock: Clock;
    log: Logger;
    /** Told of every change to an item (started, finished, stalled). */
    changed(r: Rollout): void;
}

/** One pass over a rollout's pending items. */
export interface Run {
    rollout: Rollout;
    /** Only pending items of these phases run. */
    phases: readonly ItemPhase[];
    /** Start no more items (cancel, pause, revert, lost lease, shutdown); the running ones end. */
    halted(): boolean;
    /** An item failed (before the next starts). */
    failed(item: RolloutItem): void;
    /** What an item does; rejects with why it failed (OperationInProgress: its server is busy). */
    act(item: RolloutItem, signal: AbortSignal): Promise<void>;
    /** Durations of the succeeded items, for average_ms. */
    durations: { sum: number; n: number };
}

/** The durations of a rollout's succeeded items. */
export function durationsOf(r: Rollout): { sum: number; n: number } {
    const d = { sum: 0, n: 0 };
    for (const i of r.items) {
        if (i.state === 'succeeded' && i.duration_ms !== undefined) {
            d.sum += i.duration_ms;
            d.n += 1;
        }
    }
    return d;
}

export class Executor {
    constructor(private readonly deps: ExecutorDeps) {}

    /**
     * Pending items of the run's phases: up to `concurrency` servers at a
     * time, each server's items one after another. Resolves once none is
     * left, or once the run is halted and the running ones have ended.
     */
    async run(run: Run): Promise<void> {
        const r = run.rollout;
        const groups = new Map<string, RolloutItem[]>();
        for (const item of r.items) {
            if (item.state === 'pending' && run.phases.includes(item.phase ?? 'main')) {
                const g = groups.get(item.server_uuid);
                if (g) g.push(item);
                else groups.set(item.server_uuid, [item]);
            }
        }
        const queue = [...groups.values()];
        const stopWatchdog = every(this.deps.clock, WATCHDOG_MS, () => this.checkStalls(r));
        try {
            const worker = async (): Promise<void> => {
                for (;;) {
                    const group = run.halted() ? undefined : queue.shift();
                    if (!group) {
                        return;
                    }
                    for (const item of group) {
                        if (run.halted()) {
                            break;
                        }
                        if (item.state !== 'pending') {
                            continue;
                        }
                        await this.runItem(run, item);
                        // (runItem changed the state)
                        if ((item.state as RolloutItem['state']) === 'failed') {
                            run.failed(item);
                        }
                    }
                }
            };
            await Promise.all(Array.from({ length: Math.min(r.concurrency, Math.max(queue.length, 1)) }, worker));
        } finally {
            stopWatchdog();
        }
    }

    private async runItem(run: Run, item: RolloutItem): Promise<void> {
        const { clock, log } = this.deps;
        const r = run.rollout;
        item.state = 'running';
        item.attempts += 1;
        const start = clock.now();
        item.started_at = new Date(start).toISOString();
        delete item.error;
        delete item.finished_at;
        delete item.duration_ms;
        this.deps.changed(r);
        const deadline = start + r.instance_timeout_ms;
        // At the deadline the item is aborted, not left running: it stops
        // waiting on CNAPI, gives the server's lock back, and is counted
        // (as timed out) when it ends.
        const timeout = new AbortController();
        // Timers may fire a little before the clock reaches their time (Node's
        // run on the event loop's cached clock): re-arm for what is left, so
        // an item never times out before its deadline as its own times
        // (start, duration) see it.
        let timer: Timer | undefined;
        const arm = (ms: number): void => {
            timer = clock.setTimeout(() => {
                const left = deadline - clock.now();
                if (left > 0) {
                    arm(left);
                    return;
                }
                timeout.abort(
                    new Error(`instance ${item.instance_uuid} on server ${item.server_uuid} timed out after ${(r.instance_timeout_ms / 1000).toFixed(1)}s`),
                );
            }, ms);
        };
        arm(r.instance_timeout_ms);
        try {
            for (;;) {
                try {
                    await untilAborted(run.act(item, timeout.signal), timeout.signal);
                    break;
                } catch (err) {
                    if (timeout.signal.aborted) {
                        throw timeout.signal.reason;
                    }
                    // The server is busy with another agent operation: wait our turn.
                    if (hasCode(err, 'OperationInProgress') && clock.now() + BUSY_RETRY_MS < deadline) {
                        await sleep(clock, BUSY_RETRY_MS);
                        continue;
                    }
                    throw err;
                }
            }
            item.state = 'succeeded';
        } catch (err) {
            item.state = 'failed';
            item.error = (err as Error).message;
            log.warn({ rollout: r.uuid, instance: item.instance_uuid, server: item.server_uuid, err }, 'rollout item failed');
        } finally {
            if (timer) clock.clearTimeout(timer);
        }
        const end = clock.now();
        item.finished_at = new Date(end).toISOString();
        item.duration_ms = end - start;
        if (item.state === 'succeeded') {
            run.durations.sum += item.duration_ms;
            run.durations.n += 1;
            r.average_ms = Math.round(run.durations.sum / run.durations.n);
        }
        this.deps.changed(r);
    }

    /**
     * Flag items running over stall_factor times the average of the finished
     * ones (once stall_min_finished have finished): an install can hang on a
     * badly set up CN, and the operator should hear of it.
     */
    checkStalls(r: Rollout): void {
        const finished = r.items.filter((i) => i.state === 'succeeded').length;
        if (r.average_ms === undefined || finished < r.stall_min_finished) {
            return;
        }
        const limit = r.average_ms * r.stall_factor;
        const now = this.deps.clock.now();
        let changed = false;
        for (const item of r.items) {
            if (item.state === 'running' && item.started_at && now - Date.parse(item.started_at) > limit) {
                item.state = 'stalled';
                const msg = `instance ${item.instance_uuid} on server ${item.server_uuid} has run ${((now - Date.parse(item.started_at)) / 1000).toFixed(1)}s, over ${r.stall_factor}x the average ${(r.average_ms / 1000).toFixed(1)}s`;
                r.warnings.push(msg);
                this.deps.log.warn({ rollout: r.uuid, instance: item.instance_uuid, server: item.server_uuid }, `stalled: ${msg}`);
                changed = true;
            }
        }
        if (changed) {
            this.deps.changed(r);
        }
    }
}

/** `p`, or the signal's reason as soon as it aborts (whether or not `p` heeds the signal). */
async function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
        return await Promise.race([p, aborted]);
    } finally {
        if (onAbort) signal.removeEventListener('abort', onAbort);
    }
}
