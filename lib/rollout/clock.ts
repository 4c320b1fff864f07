// The time a rollout engine sees: the current time and timers, from one
// injected clock. The real clock is Node's; tests use a ManualClock they
// move forward themselves, so that timeouts, the stall watchdog, throttled
// writes and takeover scans happen exactly when a test says.

/** A timer a Clock started (opaque to its users). */
export type Timer = object;

export interface Clock {
    /** Milliseconds since the epoch. */
    now(): number;
    /** Run `fn` once, `ms` from now; `unref`: the timer alone does not keep the process alive. */
    setTimeout(fn: () => void, ms: number, opts?: { unref?: boolean }): Timer;
    clearTimeout(timer: Timer): void;
}

/** Node's clock and timers. */
export const systemClock: Clock = {
    now: () => Date.now(),
    setTimeout: (fn, ms, opts) => {
        const t = setTimeout(fn, ms);
        if (opts?.unref) t.unref();
        return t;
    },
    clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

/** The clock's time as an ISO string. */
export function isoNow(clock: Clock): string {
    return new Date(clock.now()).toISOString();
}

/** Resolves `ms` from now on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
    return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

/** Call `fn` every `ms` until the returned function is called. */
export function every(clock: Clock, ms: number, fn: () => void, opts?: { unref?: boolean }): () => void {
    let timer: Timer | null = null;
    let stopped = false;
    const arm = (): void => {
        timer = clock.setTimeout(
            () => {
                if (stopped) return;
                fn();
                if (!stopped) arm();
            },
            ms,
            opts,
        );
    };
    arm();
    return () => {
        stopped = true;
        if (timer) clock.clearTimeout(timer);
    };
}

interface ManualTimer {
    due: number;
    seq: number;
    fn: () => void;
}

/**
 * A clock that moves only when told (tests). Its timers run in the order
 * they are due, each at its own time, as `advance` passes them; after each
 * one, the promise callbacks it set off run before the next.
 */
export class ManualClock implements Clock {
    private time: number;
    private seq = 0;
    private readonly timers = new Set<ManualTimer>();

    constructor(start = Date.parse('2030-01-01T00:00:00.000Z')) {
        this.time = start;
    }

    now(): number {
        return this.time;
    }

    setTimeout(fn: () => void, ms: number): Timer {
        const timer: ManualTimer = { due: this.time + Math.max(0, ms), seq: this.seq++, fn };
        this.timers.add(timer);
        return timer;
    }

    clearTimeout(timer: Timer): void {
        this.timers.delete(timer as ManualTimer);
    }

    /** Timers not yet run. */
    get pending(): number {
        return this.timers.size;
    }

    /** Move time forward by `ms`, running every timer due on the way. */
    async advance(ms: number): Promise<void> {
        const end = this.time + ms;
        await settle();
        for (;;) {
            let next: ManualTimer | undefined;
            for (const t of this.timers) {
                if (t.due <= end && (!next || t.due < next.due || (t.due === next.due && t.seq < next.seq))) next = t;
            }
            if (!next) break;
            this.timers.delete(next);
            this.time = Math.max(this.time, next.due);
            next.fn();
            await settle();
        }
        this.time = end;
        await settle();
    }
}

/** Lets the promise callbacks queued so far (and those they queue) run. */
export function settle(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
}
