// Every SAPI looks, every ttl/2, for running or reverting rollouts nobody
// holds (their driver's lease expired: a restart, or a SAPI lost) and takes
// them over; paused ones are driven by nobody, but one waiting for an
// automatic promotion gets its timer here. Also those timers.

import type Logger from 'bunyan';

import type { LeaseHandle, Leases } from '../leases/leases.js';
import { BUCKETS } from '../stor/buckets.js';
import { oneOf, type Store } from '../stor/store.js';
import { every, type Clock, type Timer } from './clock.js';
import { ACTIVE_STATES, type Rollout } from './types.js';

const BUCKET = BUCKETS.rollouts.name;

export function rolloutLeaseKey(uuid: string): string {
    return `rollout/${uuid}`;
}

export interface ScannerDeps {
    clock: Clock;
    log: Logger;
    store: Store;
    leases: Leases;
    /** Whether this process drives the rollout already. */
    driven(uuid: string): boolean;
    /** No more takeovers (shutting down). */
    stopped(): boolean;
    /** A paused rollout was seen. */
    paused(r: Rollout): void;
    /** Drive `r`, whose lease was just taken (`startup`: the first scan of this process). */
    takeOver(r: Rollout, lease: LeaseHandle, startup: boolean): Promise<void>;
}

export class TakeoverScanner {
    private stopTimer: (() => void) | null = null;
    private scanning: Promise<number> | null = null;

    constructor(private readonly deps: ScannerDeps) {}

    /** Scan now, then every ttl/2; resolves with how many rollouts the first scan took over. */
    start(): Promise<number> {
        if (!this.stopTimer && !this.deps.stopped()) {
            const ms = Math.max(1, Math.floor(this.deps.leases.ttlMs / 2));
            this.stopTimer = every(
                this.deps.clock,
                ms,
                () => void this.scan(false).catch((err: unknown) => this.deps.log.error({ err }, 'rollout takeover scan failed')),
                { unref: true },
            );
        }
        return this.scan(true);
    }

    stop(): void {
        this.stopTimer?.();
        this.stopTimer = null;
    }

    /** One scan (a scan asked for while one runs shares it). */
    scan(startup: boolean): Promise<number> {
        if (this.scanning) {
            return this.scanning;
        }
        this.scanning = this.scanOnce(startup).finally(() => {
            this.scanning = null;
        });
        return this.scanning;
    }

    private async scanOnce(startup: boolean): Promise<number> {
        const { store, leases, log } = this.deps;
        if (this.deps.stopped()) {
            return 0;
        }
        const page = await store.find<Rollout>(BUCKET, oneOf('state', ['running', 'reverting', 'paused']));
        let n = 0;
        for (const { value: r } of page.items) {
            if (this.deps.stopped() || this.deps.driven(r.uuid)) {
                continue;
            }
            if (r.state === 'paused') {
                this.deps.paused(r);
                continue;
            }
            const lease = await leases.tryAcquire(rolloutLeaseKey(r.uuid), `rollout ${r.uuid}`);
            if (!lease) {
                continue; // its owner is alive
            }
            try {
                const fresh = (await store.get<Rollout>(BUCKET, r.uuid))?.value;
                if (!fresh || !ACTIVE_STATES.includes(fresh.state) || this.deps.driven(r.uuid)) {
                    await lease.release();
                    continue;
                }
                await this.deps.takeOver(fresh, lease, startup);
                n += 1;
            } catch (err) {
                await lease.release().catch(() => undefined);
                log.error({ err, rollout: r.uuid }, 'could not resume a rollout');
            }
        }
        return n;
    }
}

/** Timers of paused canary rollouts that promote themselves at auto_promote_at. */
export class AutoPromotions {
    private readonly timers = new Map<string, Timer>();
    private stopped = false;

    constructor(
        private readonly clock: Clock,
        private readonly promote: (uuid: string) => void,
    ) {}

    arm(r: Rollout): void {
        if (this.stopped || r.auto_promote_at === undefined || this.timers.has(r.uuid)) {
            return;
        }
        const uuid = r.uuid;
        const timer = this.clock.setTimeout(
            () => {
                this.timers.delete(uuid);
                this.promote(uuid);
            },
            Math.max(0, Date.parse(r.auto_promote_at) - this.clock.now()),
            { unref: true },
        );
        this.timers.set(uuid, timer);
    }

    disarm(uuid: string): void {
        const t = this.timers.get(uuid);
        if (t) {
            this.clock.clearTimeout(t);
            this.timers.delete(uuid);
        }
    }

    /** No more automatic promotions (shutting down). */
    stop(): void {
        this.stopped = true;
        for (const t of this.timers.values()) {
            this.clock.clearTimeout(t);
        }
        this.timers.clear();
    }
}
