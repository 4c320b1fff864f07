// Writes a rollout's progress to the store, throttled: at most once every
// PERSIST_INTERVAL_MS per rollout (a 1,000-item rollout object is large),
// while a final write (a pause, a finish, a command) goes at once. Writes of
// one rollout are made one after another, in order. A restart re-checks
// items finished in the last interval against CNAPI's server.agents, and
// runs again only those not at their image.

import type Logger from 'bunyan';

import type { Clock, Timer } from './clock.js';
import type { Rollout } from './types.js';

export const PERSIST_INTERVAL_MS = 500;

export interface PersisterDeps {
    clock: Clock;
    log: Logger;
    /** Write the rollout (a copy of it, as it is at the time of the write). */
    write(r: Rollout): Promise<void>;
    /** Whether this process may no longer write the rollout (its lease is lost: the new owner writes). */
    fenced(uuid: string): boolean;
    intervalMs?: number;
}

interface Flush {
    timer: Timer | null;
    chain: Promise<void>;
}

export class Persister {
    private readonly flushes = new Map<string, Flush>();
    private readonly intervalMs: number;

    constructor(private readonly deps: PersisterDeps) {
        this.intervalMs = deps.intervalMs ?? PERSIST_INTERVAL_MS;
    }

    /** Write `r` soon (at the end of the interval), or at once when `final`; resolves once written. */
    persist(r: Rollout, final = false): Promise<void> {
        let state = this.flushes.get(r.uuid);
        if (!state) {
            state = { timer: null, chain: Promise.resolve() };
            this.flushes.set(r.uuid, state);
        }
        const f = state;
        const write = (): Promise<void> => {
            f.timer = null;
            f.chain = f.chain.then(async () => {
                if (this.deps.fenced(r.uuid)) {
                    return;
                }
                try {
                    await this.deps.write(r);
                } catch (err) {
                    this.deps.log.error({ err, rollout: r.uuid }, 'could not persist rollout progress');
                }
            });
            return f.chain;
        };
        if (final) {
            if (f.timer) {
                this.deps.clock.clearTimeout(f.timer);
            }
            const done = write();
            this.flushes.delete(r.uuid);
            return done;
        }
        if (!f.timer) {
            f.timer = this.deps.clock.setTimeout(() => void write(), this.intervalMs);
        }
        return f.chain;
    }

    /** Drop what is pending for a rollout this process no longer drives (nothing more is written). */
    forget(uuid: string): void {
        const f = this.flushes.get(uuid);
        if (f?.timer) {
            this.deps.clock.clearTimeout(f.timer);
        }
        this.flushes.delete(uuid);
    }
}
