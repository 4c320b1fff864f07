// The local cache as a mirror of Moray that the change feed keeps current,
// and the rule for when it may answer instead of Moray.
//
// What keeps it current. The change feed (stor/moray/feed.ts) gives it the
// value of every row of the instances, services, applications and
// manifests buckets that anyone wrote, and every delete recorded by a
// tombstone, a few times a second. A full copy from Moray (CachedStore's
// sync()) fills it; a copy counts only if it began after the feed's current
// chain of polls began (so every change is in it, or told after it), and a
// row the feed or this process wrote while the copy ran is left as they
// wrote it (the copy may have read it earlier). When the feed starts
// afresh, the mirror stops answering and asks for a new copy.
//
// When it answers. A list (and a count) is answered from the mirror only
// once a poll that began after the list was asked for has been applied
// (FeedHandle.catchUp(), the ReadIndex idea of Raft): a write acknowledged
// by any SAPI before the request is then in the answer (a poll late by more
// than CATCH_UP_WAIT_MS sends the list to Moray instead; a search Moray
// could answer only by reading every row waits up to COPY_WAIT_MS, as long
// as polls go on completing). Two things the
// feed cannot see are guarded against:
//   - a delete by a SAPI that records none (SAPI 2.1.2): as long as the
//     feed has lately seen rows written the way 2.1.2 writes them
//     (instances without their top-level index copies), lists go to Moray;
//   - and whatever else: Moray counts the matches of the same filter beside
//     the poll (one small query), and a count that differs from the
//     mirror's sends the list to Moray and asks for a new copy. A filter
//     Moray cannot answer by index yet (a bucket update being reindexed)
//     is not counted there: the mirror, whose columns come from `params`,
//     answers it exactly, which is what makes searches fast during an
//     upgrade (one that arrives while the copy is being made waits for it,
//     up to COPY_WAIT_MS, rather than have Moray read every row again).
// One object's value (GetConfig's reads) is answered without a poll, as of
// the last poll applied; the caller judges whether that is recent enough.

import type { BucketName } from './buckets.js';
import { BUCKETS, CONFIG_BUCKETS, staleIndexCopies } from './buckets.js';
import type { ChangedRow, ChangeMirror, FeedHandle } from './changes.js';
import type { SqliteStore } from './sqlite/index.js';
import type { Filter, JsonObject, RecentReads } from './store.js';

/** After a row written the 2.1.2 way is seen, lists go to Moray for this long. */
export const LEGACY_QUIET_MS = 10 * 60 * 1000;
/** How long a search Moray would answer by reading every row waits for a copy under way, or for polls that go on completing, instead. */
export const COPY_WAIT_MS = 60_000;
/** Polls count as going on while one has completed within this long. */
export const FEED_QUIET_MS = 10_000;
/** How long a list waits for the poll and Moray's count before it asks Moray itself. */
export const CATCH_UP_WAIT_MS = 1000;
/** Between two requests for a full copy (a copy that keeps failing is not asked for at every poll). */
export const RECOPY_GAP_MS = 5000;

/** The buckets the change feed tells (the mirror answers only for these). */
const MIRRORED: ReadonlySet<string> = new Set<string>(CONFIG_BUCKETS);

export interface MirrorLogger {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
}

export interface LocalMirrorOptions {
    local: SqliteStore;
    log: MirrorLogger;
    /** Ask for a full copy from Moray (CachedStore's sync(): one at a time, asked for again once it ends). */
    resync: () => void;
    /** Moray's count of `filter`'s matches, or null when Moray cannot count it by index now. */
    remoteCount: (bucket: BucketName, filter: Filter) => Promise<number> | null;
    /** Whether Moray can answer `filter` only by reading every row (a field it is still indexing). */
    unindexed: (bucket: BucketName, filter: Filter) => boolean;
    /** A monotonic clock in milliseconds (tests replace it). */
    now?: () => number;
}

export class LocalMirror implements ChangeMirror, RecentReads {
    private feed: FeedHandle | null = null;
    /** The chain under which a complete copy was made; null: none (the mirror does not answer). */
    private validChain: number | null = null;
    /** The last poll applied: its chain and start (the feed's clock). */
    private lastPoll: { chain: number; startedAt: number } | null = null;
    private legacySeenAt = -Infinity;
    /** `<bucket>/<uuid>` written by the feed or this process while a copy runs (null: no copy running). */
    private touched: Set<string> | null = null;
    /** Settles when the copy under way ends. */
    private copyEnded: { promise: Promise<void>; resolve: () => void } | null = null;
    private nextCopyAt = -Infinity;
    /** When the last poll was told complete (this mirror's clock). */
    private lastPollAt = -Infinity;
    /** Write-throughs of this turn of the event loop, not in the copy yet (see wrote()). */
    private readonly pending = new Map<string, { bucket: BucketName; uuid: string; value: JsonObject | null }>();
    private settleSoon: NodeJS.Immediate | null = null;
    /** Waiting for a chain of the feed to begin (see chainBegun()). */
    private chainWaiters: (() => void)[] = [];
    private readonly now: () => number;
    /** Lists answered from the mirror, and from Moray for want of it (for tests and logs). */
    readonly served = { mirror: 0, moray: 0 };

    constructor(private readonly opts: LocalMirrorOptions) {
        this.now = opts.now ?? (() => performance.now());
    }

    // ---- fed by the change feed

    attach(feed: FeedHandle): void {
        this.feed = feed;
        this.validChain = null;
        this.nextCopyAt = -Infinity;
    }

    apply(bucket: BucketName, rows: readonly ChangedRow[]): void {
        if (!MIRRORED.has(bucket)) {
            return;
        }
        this.settle();
        const values: JsonObject[] = [];
        for (const r of rows) {
            if (bucket === BUCKETS.instances.name && staleIndexCopies(BUCKETS.instances, r.value).length > 0) {
                if (this.now() - this.legacySeenAt > LEGACY_QUIET_MS) {
                    this.opts.log.info({ uuid: r.key }, 'local cache: a row written without index copies (SAPI 2.1.2?): lists go to moray for a while');
                }
                this.legacySeenAt = this.now();
            }
            this.touch(bucket, r.key);
            values.push(r.value);
        }
        try {
            this.opts.local.putIfChanged(bucket, values);
        } catch (err) {
            this.invalidate(err, bucket);
        }
    }

    deleted(bucket: BucketName, uuid: string): void {
        if (!MIRRORED.has(bucket)) {
            return;
        }
        this.settle();
        this.touch(bucket, uuid);
        try {
            this.opts.local.delUnchecked(bucket, uuid);
        } catch (err) {
            this.invalidate(err, bucket);
        }
    }

    polled(chain: number, startedAt: number): void {
        this.lastPoll = { chain, startedAt };
        this.lastPollAt = this.now();
        for (const w of this.chainWaiters.splice(0)) {
            w();
        }
        if (this.validChain !== null && this.validChain !== chain) {
            // The feed started afresh: what happened in between is not in the mirror.
            this.validChain = null;
        }
        // Copies are asked for from here only: the chain they are made under has begun.
        if (this.validChain === null && this.touched === null && this.now() >= this.nextCopyAt) {
            this.nextCopyAt = this.now() + RECOPY_GAP_MS;
            this.opts.resync();
        }
    }

    // ---- fed by this process and by the full copy

    /**
     * This process wrote `uuid` of `bucket` to Moray (`value` null: deleted
     * it): the copy takes it at the end of this turn of the event loop, with
     * every other write-through of the turn in one transaction, or before
     * anything reads the copy or the feed writes to it, whichever is first.
     */
    wrote(bucket: BucketName, uuid: string, value: JsonObject | null): void {
        this.touch(bucket, uuid);
        const key = `${bucket}/${uuid}`;
        this.pending.delete(key);
        this.pending.set(key, { bucket, uuid, value });
        this.settleSoon ??= setImmediate(() => this.settle());
    }

    /** Write what this process wrote through and the copy does not hold yet (see wrote()). */
    settle(): void {
        if (this.settleSoon !== null) {
            clearImmediate(this.settleSoon);
            this.settleSoon = null;
        }
        if (this.pending.size === 0) {
            return;
        }
        const ops = [...this.pending.values()];
        this.pending.clear();
        try {
            this.opts.local.applyCopy(ops);
        } catch (err) {
            this.invalidate(err, (ops[0] as { bucket: BucketName }).bucket);
        }
    }

    /**
     * Resolves once a chain of the feed has begun, or after `ms` (no feed
     * yet): a copy made before that would not count, and be made again.
     */
    chainBegun(ms: number): Promise<void> {
        if (this.feed?.chain() != null || ms <= 0) {
            return Promise.resolve();
        }
        return new Promise((resolve) => {
            const timer = setTimeout(resolve, ms);
            timer.unref();
            this.chainWaiters.push(() => {
                clearTimeout(timer);
                resolve();
            });
        });
    }

    /** A full copy begins: returns what it needs to skip rows and to finish. */
    beginCopy(): { chain: number | null; skip: (bucket: BucketName, uuid: string) => boolean } {
        this.settle();
        const touched = new Set<string>();
        this.touched = touched;
        let resolve: () => void = () => undefined;
        const promise = new Promise<void>((r) => (resolve = r));
        this.copyEnded = { promise, resolve };
        return { chain: this.feed?.chain() ?? null, skip: (bucket, uuid) => touched.has(`${bucket}/${uuid}`) };
    }

    /** The full copy begun under `chain` has ended (ok: completely). */
    endCopy(chain: number | null, ok: boolean): void {
        this.touched = null;
        this.copyEnded?.resolve();
        this.copyEnded = null;
        if (ok && chain !== null && this.feed?.chain() === chain) {
            if (this.validChain !== chain) {
                this.opts.log.info({ chain }, 'local cache: complete and kept current by the change feed; lists are answered from it');
            }
            this.validChain = chain;
        }
        // Otherwise (a copy made before the feed's chain began, or across a
        // restart of it, or one that failed) the next poll asks for another.
    }

    // ---- answering

    /** Whether the feed keeps the mirror current now (a read of Moray may be older than what it holds). */
    keptCurrent(): boolean {
        return this.feed !== null && this.validChain !== null;
    }

    /** Whether the mirror may answer a list of `bucket` matching `filter` now (see the header). */
    async answers(bucket: BucketName, filter: Filter): Promise<boolean> {
        const copying = this.copyEnded;
        const unindexed = MIRRORED.has(bucket) && this.opts.unindexed(bucket, filter);
        if (this.validChain === null && copying !== null && unindexed) {
            // Moray would read every row for this one (during an upgrade): the copy under way reads them once, and then answers.
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([copying.promise, new Promise<void>((r) => (timer = setTimeout(r, COPY_WAIT_MS)))]);
            clearTimeout(timer);
        }
        const feed = this.feed;
        const chain = this.validChain;
        if (feed === null || chain === null || !MIRRORED.has(bucket) || this.legacyRecent()) {
            this.served.moray++;
            return false;
        }
        const counting = this.opts.remoteCount(bucket, filter);
        let timer: NodeJS.Timeout | undefined;
        const asked = this.now();
        const late = new Promise<never>((_, reject) => {
            // A search Moray would answer by reading every row waits longer, while polls go on
            // completing (slowly: an upgrade loads Moray): waiting is still far quicker.
            const check = (): void => {
                const waited = this.now() - asked;
                const quiet = this.now() - this.lastPollAt > FEED_QUIET_MS;
                if (waited >= (unindexed ? COPY_WAIT_MS : CATCH_UP_WAIT_MS) || (unindexed && waited >= CATCH_UP_WAIT_MS && quiet)) {
                    reject(new Error('the change feed is late'));
                } else {
                    timer = setTimeout(check, unindexed ? 100 : CATCH_UP_WAIT_MS - waited);
                }
            };
            timer = setTimeout(check, unindexed ? 100 : CATCH_UP_WAIT_MS);
        });
        try {
            const [, remote] = await Promise.race([Promise.all([feed.catchUp(), counting]), late]);
            if (feed.chain() !== chain || this.validChain !== chain || this.legacyRecent()) {
                this.served.moray++;
                return false;
            }
            this.settle();
            if (remote !== null && remote !== (await this.opts.local.count(bucket, filter))) {
                this.opts.log.warn({ bucket, moray: remote }, 'local cache: its count differs from moray: answering from moray and copying again');
                this.validChain = null;
                this.served.moray++;
                return false;
            }
        } catch {
            counting?.catch(() => undefined);
            this.served.moray++;
            return false;
        } finally {
            clearTimeout(timer);
        }
        this.served.mirror++;
        return true;
    }

    get<T extends JsonObject>(bucket: BucketName, uuid: string): { value: T | null; asOf: number } | null {
        const poll = this.lastPoll;
        if (this.feed === null || this.validChain === null || poll === null || poll.chain !== this.validChain || !MIRRORED.has(bucket) || this.legacyRecent()) {
            return null;
        }
        try {
            this.settle();
            return { value: this.opts.local.getSync<T>(bucket, uuid)?.value ?? null, asOf: poll.startedAt };
        } catch {
            return null;
        }
    }

    private legacyRecent(): boolean {
        return this.now() - this.legacySeenAt < LEGACY_QUIET_MS;
    }

    private touch(bucket: BucketName, uuid: string): void {
        this.touched?.add(`${bucket}/${uuid}`);
    }

    private invalidate(err: unknown, bucket: BucketName): void {
        this.opts.log.warn({ err, bucket }, 'local cache: applying a change failed: answering from moray until it is copied again');
        this.validChain = null;
    }
}
