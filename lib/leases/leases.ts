// Leases: a named claim held by one SAPI process at a time, with an owner,
// an expiry and a version tag. Used for the per-server agent lock and for
// rollout ownership, so that several SAPIs on one Moray never start two
// agent tasks on one server at once and never drive one rollout twice.
//
// Every change is conditional on the version the changer last read: taking
// a free key requires that no record exists, taking an expired one or
// renewing requires the tag read (or written) last, so of two processes
// racing for a key exactly one wins. A lease whose expiry has passed (by the
// reader's clock; the holder renews well before, every ttl/3) may be taken
// by anyone. A key held by a live lease is busy for every caller, this
// process included.
//
// Backends: in memory (the embedded store: one process per store), or
// records in Moray's `sapi_leases` bucket. A backend that cannot answer
// throws StoreUnavailableError: a lease is never assumed taken or free
// because the store failed.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

import { EtagConflictError, NotFoundError } from '../stor/errors.js';
import { MemoryLeaseBackend, type LeaseBackend, type LeaseRecord, type StoredLease } from '../stor/lease-backend.js';

export interface LeaseHandle {
    readonly key: string;
    /** Extend the expiry by ttl; false if the lease was lost (taken over / deleted). */
    renew(): Promise<boolean>;
    /** Give it back (no-op if already lost). */
    release(): Promise<void>;
    /** Aborts when the lease is known to be lost (renew failed). */
    readonly lost: AbortSignal;
}

export interface Leases {
    /** This process's owner id (unique per process start). */
    readonly owner: string;
    readonly ttlMs: number;
    /** Take `key` if free or expired; null if another live owner holds it. */
    tryAcquire(key: string, operation: string): Promise<LeaseHandle | null>;
    /** Who holds `key` now (null: free or expired). */
    holder(key: string): Promise<LeaseRecord | null>;
    /** Keep renewing `handle` every ttl/3 until released or lost (returns a stop function). */
    keepAlive(handle: LeaseHandle): () => void;
}

export interface LeasesOptions {
    backend: LeaseBackend;
    /** How long a lease lasts without renewal (ms). */
    ttlMs: number;
    /** Owner id; default host, pid and a random part (unique per start). */
    owner?: string | undefined;
    /** Clock (ms since epoch); tests pass a fake one. */
    now?: (() => number) | undefined;
    /** Told about renewals that failed for a reason other than loss. */
    onRenewError?: ((key: string, err: unknown) => void) | undefined;
}

/** A fresh owner id for this process. */
export function newOwnerId(): string {
    return `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
}

function isConflict(err: unknown): boolean {
    return err instanceof EtagConflictError || err instanceof NotFoundError;
}

class Handle implements LeaseHandle {
    private readonly controller = new AbortController();
    released = false;

    constructor(
        private readonly leases: StoreLeases,
        readonly key: string,
        public record: LeaseRecord,
        public etag: string,
    ) {}

    get lost(): AbortSignal {
        return this.controller.signal;
    }

    /** Mark the lease lost (once). */
    markLost(reason: string): void {
        if (!this.controller.signal.aborted) {
            this.controller.abort(new Error(`lease ${this.key} lost: ${reason}`));
        }
    }

    /**
     * Whether the expiry is less than a third of the TTL away. A holder that
     * has not renewed by then gives the lease up itself: another process may
     * take it once it expires on that process's clock, which can run a little
     * ahead of ours, and the holder must have stopped by then.
     */
    expiring(): boolean {
        return this.leases.now() >= Date.parse(this.record.expires_at) - this.leases.ttlMs / 3;
    }

    async renew(): Promise<boolean> {
        if (this.released || this.lost.aborted) {
            return false;
        }
        const now = this.leases.now();
        const next: LeaseRecord = { ...this.record, expires_at: new Date(now + this.leases.ttlMs).toISOString() };
        try {
            this.etag = await this.leases.backend.put(next, this.etag);
            this.record = next;
            return true;
        } catch (err) {
            if (isConflict(err)) {
                this.markLost('taken over or removed by another process');
                return false;
            }
            // The store did not answer: still ours, but only while well inside
            // the expiry (see expiring()).
            if (this.expiring()) {
                this.markLost('could not be renewed before it expired');
                return false;
            }
            throw err;
        }
    }

    async release(): Promise<void> {
        if (this.released) {
            return;
        }
        this.released = true;
        if (this.lost.aborted) {
            return;
        }
        try {
            await this.leases.backend.del(this.key, this.etag);
        } catch (err) {
            if (!isConflict(err)) {
                // Unreachable store: the record simply expires.
                throw err;
            }
        }
    }
}

/** Leases over a LeaseBackend (in memory or Moray). */
export class StoreLeases implements Leases {
    readonly owner: string;
    readonly ttlMs: number;
    readonly backend: LeaseBackend;
    readonly now: () => number;
    private readonly onRenewError: (key: string, err: unknown) => void;

    constructor(opts: LeasesOptions) {
        this.backend = opts.backend;
        this.ttlMs = opts.ttlMs;
        this.owner = opts.owner ?? newOwnerId();
        this.now = opts.now ?? Date.now;
        this.onRenewError = opts.onRenewError ?? (() => undefined);
    }

    private live(cur: StoredLease | null): boolean {
        return cur !== null && Date.parse(cur.record.expires_at) > this.now();
    }

    async tryAcquire(key: string, operation: string): Promise<LeaseHandle | null> {
        const cur = await this.backend.get(key);
        if (this.live(cur)) {
            return null;
        }
        const now = this.now();
        const record: LeaseRecord = {
            key,
            owner: this.owner,
            operation,
            acquired_at: new Date(now).toISOString(),
            expires_at: new Date(now + this.ttlMs).toISOString(),
        };
        try {
            const etag = await this.backend.put(record, cur ? cur.etag : null);
            return new Handle(this, key, record, etag);
        } catch (err) {
            if (isConflict(err)) {
                return null; // another process got there first
            }
            throw err;
        }
    }

    async holder(key: string): Promise<LeaseRecord | null> {
        const cur = await this.backend.get(key);
        return cur && this.live(cur) ? cur.record : null;
    }

    keepAlive(handle: LeaseHandle): () => void {
        let stopped = false;
        let running = false;
        const tick = (): void => {
            if (stopped) {
                return;
            }
            if (running) {
                // A renewal that hangs (the store not answering) must not
                // keep a lease alive past the point its holder gives it up.
                if (handle instanceof Handle && handle.expiring()) {
                    handle.markLost('could not be renewed before it expired');
                    stop();
                }
                return;
            }
            if (handle instanceof Handle && (handle.released || handle.lost.aborted)) {
                stop();
                return;
            }
            running = true;
            handle.renew().then(
                (ok) => {
                    running = false;
                    if (!ok) {
                        stop();
                    }
                },
                (err: unknown) => {
                    running = false;
                    this.onRenewError(handle.key, err);
                },
            );
        };
        const timer = setInterval(tick, Math.max(1, Math.floor(this.ttlMs / 3)));
        timer.unref();
        const stop = (): void => {
            stopped = true;
            clearInterval(timer);
        };
        return stop;
    }
}

/** Leases kept in this process's memory (the embedded store). */
export function memoryLeases(ttlMs: number, opts: Omit<LeasesOptions, 'backend' | 'ttlMs'> = {}): StoreLeases {
    return new StoreLeases({ ...opts, backend: new MemoryLeaseBackend(), ttlMs });
}
