// GetConfig's change feed on Moray: one poller per process that asks Moray,
// every intervalMs, which objects of the buckets config documents are made
// of (instances, services, applications, manifests) changed lately, and
// which were deleted (the tombstones SAPI-TS writes in the same batch as
// each delete, see TOMBSTONES_BUCKET), and tells the sink (GetConfig's
// cache) exactly those. While polls succeed, the cache answers from what it
// keeps without reading Moray again; when they stop, it falls back to
// reading again what is older than the visibility bound.
//
// What a poll asks. Moray stamps every row it writes with `_mtime` (the
// Moray process's clock in milliseconds, taken while the write runs, before
// its transaction commits), keeps it in an indexed column, and accepts it in
// findObjects filters and sorts. A poll asks, per bucket, for the rows with
// `_mtime` at or after "the start of the previous successful poll, on
// Moray's clock, minus OVERLAP_MS", oldest first. Moray's clock is found
// from this process's own: now and then the feed writes a row of its own
// (in the tombstones bucket) and reads its `_mtime` back; the offset taken
// (the stamp minus the local time once the write has returned) never puts
// Moray's clock later than it is. The overlap is needed because `_mtime`
// order is not commit order: a write stamped earlier can commit later (a
// long batch, a slow commit), and several Moray processes stamp with their
// own clocks. So a write that commits less than OVERLAP_MS after its stamp
// (stamp-to-commit lag plus clock skew between Moray processes below
// OVERLAP_MS) is seen by the first poll that starts after its commit. Rows
// met again in the overlap are told only once (by their `_mtime` and
// `_etag`). A write beyond that lag, and a delete made by a SAPI that writes
// no tombstones (SAPI 2.1.2 during an upgrade), are not seen by the feed:
// the cache's slower revalidation of everything it keeps covers those (its
// fallbackMs).
//
// Observers. Besides the sink, an optional row observer (given by the
// composition) sees every row a poll reads, with its value and `_etag`,
// after the sink is told; it must return at once (whatever it does with the
// rows, it does beside the polls). The Moray store's observer rewrites the
// rows SAPI 2.1.2 wrote without their index copies (repair.ts).
//
// Mirrors. A copy of the objects (the local cache on Moray, given by the
// composition) is given, after the sink, the value of every row told and
// every delete, then told the poll is over with the number of its chain. It
// may ask for a poll at once (catchUp(): a poll that begins after the call;
// callers that ask meanwhile share the next one), which is how a list
// answered from the copy contains every write acknowledged before it was
// asked for, whichever SAPI made it.
//
// Chains. The first poll only measures Moray's clock (nothing before it is
// told); a poll reads a bucket's changes in pages, and one that meets
// `limit` rows of one bucket cannot tell everything and starts afresh the same way,
// as does one after the feed has
// failed for longer than half the tombstones' life. The sink hears when the
// chain it may trust began (polled()'s `since`): what it read before then is
// not covered by the feed.

import { randomUUID } from 'node:crypto';

import type { BucketName } from '../buckets.js';
import type { ChangedRow, ChangeMirror, ChangeSink, ChangeSource, FeedHandle, RowObserver } from '../changes.js';
import { CONFIG_BUCKETS, TOMBSTONES_BUCKET } from '../buckets.js';
import type { Store } from '../store.js';

/** The buckets GetConfig documents are made of: their deletes leave tombstones. */
export const FEED_BUCKETS: readonly BucketName[] = CONFIG_BUCKETS;

/** Between polls. */
export const FEED_INTERVAL_MS = 300;
/** How far before the highest `_mtime` seen each poll looks again (see above). */
export const OVERLAP_MS = 3000;
/** Rows of one bucket one poll reads at most before it starts afresh (an upgrade rewrites thousands a second). */
export const FEED_LIMIT = 50_000;
/** Rows per findObjects of a poll (a poll reads more in pages, by `_mtime`). */
export const FEED_PAGE = 2000;
/** Tombstones older than this are pruned. */
export const TOMBSTONE_KEEP_MS = 60 * 60 * 1000;
/** Between prunes of old tombstones. */
export const PRUNE_EVERY_MS = 10 * 60 * 1000;
/** Between measures of Moray's clock. */
export const CLOCK_EVERY_MS = 10_000;

export type { ChangedRow, ChangeMirror, ChangeSink, ChangeSource, FeedHandle, RowObserver } from '../changes.js';

export interface FeedLogger {
    warn(obj: object, msg: string): void;
    info(obj: object, msg: string): void;
}

export interface ChangeFeedOptions {
    /** The Moray behind the store now, or null (proto mode, multi-DC, embedded store): no polls then. */
    source: () => ChangeSource | null;
    sink: ChangeSink;
    /** Who else sees the rows read, for the Moray behind the store now (see above). */
    observer?: (() => RowObserver | null) | undefined;
    /** The copy this feed keeps current for the store now (Moray's local cache), or null (see Mirrors above). */
    mirror?: (() => ChangeMirror | null) | undefined;
    log?: FeedLogger | undefined;
    intervalMs?: number | undefined;
    overlapMs?: number | undefined;
    limit?: number | undefined;
    pageSize?: number | undefined;
    tombstoneKeepMs?: number | undefined;
    pruneEveryMs?: number | undefined;
    clockEveryMs?: number | undefined;
    /** This process's wall clock in milliseconds (tests replace it). */
    wallNow?: (() => number) | undefined;
}

const TOMBSTONES = TOMBSTONES_BUCKET.name;

/** The change source of the store serving now (Moray), or null (embedded store, proto mode, multi-DC). */
export function changeSourceOf(store: Store): ChangeSource | null {
    return store.capabilities().changeSource ?? null;
}

/** The row observer of the store serving now (Moray), or null. */
export function rowObserverOf(store: Store): RowObserver | null {
    return store.capabilities().rowObserver ?? null;
}

interface Waiter {
    resolve: () => void;
    reject: (err: Error) => void;
}

export class ChangeFeed implements FeedHandle {
    private readonly intervalMs: number;
    private readonly overlapMs: number;
    private readonly limit: number;
    private readonly pageSize: number;
    private readonly keepMs: number;
    private readonly pruneEveryMs: number;
    private readonly clockEveryMs: number;
    private readonly wallNow: () => number;
    /** Names this process's clock row. */
    private readonly id = `clock/${randomUUID()}`;
    private source: ChangeSource | null = null;
    /** Moray's clock minus this process's (wall clocks); null: not measured in this chain. */
    private offset: number | null = null;
    private lastClock = -Infinity;
    /** The wall clock when the last successful poll began (null: no chain). */
    private lastWall: number | null = null;
    /** Rows told within the overlap: `<bucket>/<key>` → their `_mtime` and signature. */
    private readonly seen = new Map<string, { mtime: number; sig: string }>();
    /** The start of the current chain, and of its last successful poll (sink clock). */
    private since = 0;
    private lastOk = 0;
    private lastPrune = -Infinity;
    private pruning: Promise<void> | null = null;
    private timer: NodeJS.Timeout | null = null;
    private running: Promise<void> | null = null;
    private stopped = false;
    private failing = false;
    /** Restarting for too many changes (logged once until a poll succeeds). */
    private overflowing = false;
    /** The number of the current chain (see FeedHandle.chain()); 0: none yet. */
    private chainNo = 0;
    /** Callers of catchUp() waiting for the next poll to begin, and those waiting on the poll under way. */
    private waiting: Waiter[] = [];
    private mirrorRef: ChangeMirror | null = null;

    constructor(private readonly opts: ChangeFeedOptions) {
        this.intervalMs = opts.intervalMs ?? FEED_INTERVAL_MS;
        this.overlapMs = opts.overlapMs ?? OVERLAP_MS;
        this.limit = opts.limit ?? FEED_LIMIT;
        this.pageSize = Math.min(opts.pageSize ?? FEED_PAGE, this.limit);
        this.keepMs = opts.tombstoneKeepMs ?? TOMBSTONE_KEEP_MS;
        this.pruneEveryMs = opts.pruneEveryMs ?? PRUNE_EVERY_MS;
        this.clockEveryMs = opts.clockEveryMs ?? CLOCK_EVERY_MS;
        this.wallNow = opts.wallNow ?? Date.now;
    }

    /** Poll every intervalMs (after the previous poll ends) until stop(). */
    start(): void {
        this.stopped = false;
        const tick = (): void => {
            this.timer = null;
            if (this.stopped) {
                return;
            }
            void this.poll().finally(() => {
                if (!this.stopped) {
                    this.timer = setTimeout(tick, this.intervalMs);
                    this.timer.unref();
                }
            });
        };
        tick();
    }

    /** Stop polling. A poll under way is not waited for (Moray may be down): it ends without a word. */
    stop(): void {
        this.stopped = true;
        if (this.timer) {
            clearTimeout(this.timer);
            this.timer = null;
        }
    }

    /** One poll (tests call it directly); a poll under way is joined. Never rejects. */
    poll(): Promise<void> {
        if (this.running === null) {
            const waiters = this.waiting;
            this.waiting = [];
            this.running = this.pollOnce().then(
                (ok) => {
                    this.running = null;
                    for (const w of waiters) {
                        if (ok) {
                            w.resolve();
                        } else {
                            w.reject(new Error('change feed: the poll did not complete'));
                        }
                    }
                    if (this.waiting.length > 0 && !this.stopped) {
                        void this.poll();
                    }
                },
                () => undefined,
            );
        }
        return this.running;
    }

    catchUp(): Promise<void> {
        if (this.stopped) {
            return Promise.reject(new Error('change feed stopped'));
        }
        const p = new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
        if (this.running === null) {
            void this.poll();
        }
        return p;
    }

    chain(): number | null {
        return this.chainNo === 0 || this.lastWall === null ? null : this.chainNo;
    }

    /** Start afresh: the next poll begins a new chain. */
    private restart(): void {
        this.lastWall = null;
        this.offset = null;
        this.seen.clear();
    }

    /** Resolves true when every change committed before it began has been told. */
    private async pollOnce(): Promise<boolean> {
        const sink = this.opts.sink;
        const source = this.opts.source();
        if (source !== this.source) {
            this.source = source;
            this.restart();
        }
        if (source === null) {
            return false;
        }
        const mirror = this.opts.mirror?.() ?? null;
        if (mirror !== this.mirrorRef) {
            this.mirrorRef = mirror;
            mirror?.attach(this);
        }
        const started = sink.now();
        const wall = this.wallNow();
        // Failing long enough for tombstones of deletes it missed to be pruned: start afresh.
        if (this.lastWall !== null && started - this.lastOk > this.keepMs / 2) {
            this.restart();
        }
        try {
            if (this.offset === null || wall - this.lastClock >= this.clockEveryMs) {
                const before = this.wallNow();
                const mtime = await source.stamp(this.id);
                const after = this.wallNow();
                // Stamped no later than `after` on this clock: Moray's clock is at least this far ahead.
                this.offset = mtime - after;
                this.lastClock = before;
            }
            if (this.lastWall === null) {
                this.since = started;
                this.chainNo++;
            } else {
                const from = Math.floor(this.lastWall + this.offset - this.overlapMs);
                const buckets = [...FEED_BUCKETS, TOMBSTONES];
                const read = await Promise.all(buckets.map((b) => this.changes(source, b, Math.max(0, from))));
                const rows = read.map((r) => r.rows);
                for (const [k, v] of this.seen) {
                    if (v.mtime < from) {
                        this.seen.delete(k);
                    }
                }
                for (const [i, b] of buckets.entries()) {
                    this.tell(b, rows[i] as ChangedRow[]);
                }
                this.show(buckets, rows);
                if (read.some((r) => r.overflow)) {
                    // More changed than one poll reads: what it read is told, and a new chain begins.
                    if (!this.overflowing) {
                        this.overflowing = true;
                        this.opts.log?.warn({ limit: this.limit }, 'change feed: too many changes in one poll, starting afresh');
                    }
                    this.restart();
                    return false;
                }
            }
            this.lastWall = wall;
            this.lastOk = started;
            this.overflowing = false;
            if (this.failing) {
                this.failing = false;
                this.opts.log?.info({}, 'change feed: polling again');
            }
            sink.polled(started, this.since);
            this.mirrorRef?.polled(this.chainNo, started);
        } catch (err) {
            if (!this.failing && !this.stopped) {
                this.failing = true;
                this.opts.log?.warn({ err }, 'change feed: poll failed; documents are read again after the visibility bound until it recovers');
            }
            return false;
        }
        // Beside the polls, not in their way.
        if (this.pruning === null) {
            this.pruning = this.prune(source).finally(() => {
                this.pruning = null;
            });
        }
        return true;
    }

    /**
     * The rows of `bucket` changed since `from`, oldest first, read in pages
     * (each from the last `_mtime` of the one before, rows met twice kept
     * once; a full page all of one `_mtime` is read again twice as large).
     * `overflow`: `limit` rows or more: the caller starts afresh.
     */
    private async changes(source: ChangeSource, bucket: string, from: number): Promise<{ rows: ChangedRow[]; overflow: boolean }> {
        const rows = new Map<string, ChangedRow>();
        let at = from;
        let size = this.pageSize;
        for (;;) {
            const page = await source.changedSince(bucket, at, size);
            for (const r of page) {
                rows.delete(r.key);
                rows.set(r.key, r);
            }
            const first = page[0];
            const last = page[page.length - 1];
            if (first === undefined || last === undefined || page.length < size) {
                return { rows: [...rows.values()], overflow: false };
            }
            if (rows.size >= this.limit || (first.mtime === last.mtime && size >= this.limit)) {
                return { rows: [...rows.values()], overflow: true };
            }
            // A full page all of one `_mtime` is read again, larger.
            size = first.mtime === last.mtime ? Math.min(size * 2, this.limit) : this.pageSize;
            at = last.mtime;
        }
    }

    /** Tell the sink (and the mirror) the rows not told yet. */
    private tell(bucket: string, rows: ChangedRow[]): void {
        const sink = this.opts.sink;
        const mirror = this.mirrorRef;
        const fresh: ChangedRow[] = [];
        for (const r of rows) {
            const key = bucket === TOMBSTONES ? r.key : `${bucket}/${r.key}`;
            const sig = `${r.mtime}/${r.etag}`;
            if (this.seen.get(key)?.sig === sig) {
                continue;
            }
            this.seen.set(key, { mtime: r.mtime, sig });
            if (bucket === TOMBSTONES) {
                const b = r.value.bucket;
                const uuid = r.value.uuid;
                if (typeof b === 'string' && typeof uuid === 'string' && (FEED_BUCKETS as readonly string[]).includes(b)) {
                    sink.changed(b as BucketName, uuid);
                    mirror?.deleted(b as BucketName, uuid);
                }
            } else {
                sink.changed(bucket as BucketName, r.key);
                fresh.push(r);
            }
        }
        if (mirror !== null && fresh.length > 0) {
            mirror.apply(bucket as BucketName, fresh);
        }
    }

    /** Show the observer what was read (an observer that throws changes nothing here). */
    private show(buckets: readonly string[], rows: readonly ChangedRow[][]): void {
        const observer = this.opts.observer?.() ?? null;
        if (observer === null) {
            return;
        }
        for (const [i, b] of buckets.entries()) {
            const read = rows[i] ?? [];
            if (b === TOMBSTONES || read.length === 0) {
                continue;
            }
            try {
                observer.rowsRead(b, read);
            } catch (err) {
                this.opts.log?.warn({ err, bucket: b }, 'change feed: row observer failed');
            }
        }
    }

    /** Now and then, delete tombstones older than keepMs (on Moray's clock). Failures wait for the next time. */
    private async prune(source: ChangeSource): Promise<void> {
        const now = this.opts.sink.now();
        if (now - this.lastPrune < this.pruneEveryMs || this.offset === null) {
            return;
        }
        this.lastPrune = now;
        try {
            const before = this.wallNow() + this.offset - this.keepMs;
            let n = 0;
            // A few batches at most each time; what is left waits for the next.
            for (let round = 0; round < 10; round++) {
                const got = await source.pruneTombstones(before, 1000);
                n += got;
                if (got < 1000) {
                    break;
                }
            }
            if (n > 0) {
                this.opts.log?.info({ pruned: n }, 'change feed: old tombstones pruned');
            }
        } catch (err) {
            this.opts.log?.warn({ err }, 'change feed: pruning old tombstones failed');
        }
    }
}
