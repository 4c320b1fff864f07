// Backfill of derived index fields in a Moray bucket.
//
// Moray fills an index column only from a top-level field of the stored
// value, so a row written before SAPI kept top-level copies (an instance
// written by SAPI 2.1.2 has its server and image only inside `params`) is
// invisible to a search on that column, reindexed or not. The backfill reads
// the bucket in `_id` order and rewrites each such row with its copies set:
// a put conditional on the etag it read, many rows per Moray batch. A row
// changed meanwhile is read again and redone on its own.
//
// Progress (the last `_id` done) is saved in `sapi_meta` after every batch,
// so a restart resumes where the previous run stopped; several SAPIs may run
// it at once (the conditional puts keep them from undoing each other).
//
// The rewrite itself (rewriteStale, rewriteIfUnchanged) is shared with the
// two that repair rows SAPI 2.1.2 keeps writing once the backfill is done:
// the startup and periodic sweep (sweep.ts) and the change feed's repairer
// (repair.ts).

import { staleIndexCopies, withIndexCopies, type BucketDef } from '../buckets.js';
import { EtagConflictError, NotFoundError } from '../errors.js';
import type { MorayBatchRequest, MorayClient, MorayObject } from './client.js';
import { afterId } from './filter.js';

/** Where the progress of a bucket's backfill is kept in `sapi_meta`. */
export function backfillMetaKey(bucket: string): string {
    return `backfill.${bucket}`;
}

/** What `sapi_meta` keeps about one bucket's backfill. */
export interface BackfillState {
    /** The bucket version the backfill is for. */
    version: number;
    /** Every row with a smaller or equal `_id` is done. */
    lastId: number;
    done: boolean;
    /** Rows read and rows rewritten so far (over every run). */
    scanned: number;
    rewritten: number;
    startedAt: string;
    finishedAt?: string;
}

export interface BackfillProgress extends BackfillState {
    /** Rows per second of this process's run (0 before the first batch). */
    rate: number;
}

export interface BackfillDeps {
    client: MorayClient;
    def: BucketDef;
    metaBucket: string;
    batchSize: number;
    /** Wraps each Moray call (retries transient errors). */
    retrying: <R>(what: string, fn: () => Promise<R>) => Promise<R>;
    onProgress: (p: BackfillProgress) => void;
}

/** The state saved for `bucket`, or null. */
export async function loadBackfillState(client: MorayClient, metaBucket: string, bucket: string): Promise<BackfillState | null> {
    const rec = await client.getObject(metaBucket, backfillMetaKey(bucket));
    const text = rec?.value.value;
    if (typeof text !== 'string') {
        return null;
    }
    try {
        const s = JSON.parse(text) as Partial<BackfillState>;
        if (typeof s.version !== 'number' || typeof s.lastId !== 'number') {
            return null;
        }
        return {
            version: s.version,
            lastId: s.lastId,
            done: s.done === true,
            scanned: Number(s.scanned ?? 0),
            rewritten: Number(s.rewritten ?? 0),
            // Unknown: the earliest time there is (a sweep then starts from the beginning).
            startedAt: String(s.startedAt ?? new Date(0).toISOString()),
            ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
        };
    } catch {
        return null;
    }
}

export async function saveBackfillState(client: MorayClient, metaBucket: string, bucket: string, s: BackfillState): Promise<void> {
    await client.putObject(metaBucket, backfillMetaKey(bucket), { value: JSON.stringify(s) });
}

/** A finished backfill, for a bucket whose rows all carry their copies already (a new bucket). */
export function finishedState(version: number): BackfillState {
    const now = new Date().toISOString();
    return { version, lastId: 0, done: true, scanned: 0, rewritten: 0, startedAt: now, finishedAt: now };
}

/**
 * Run (or resume) the backfill of `deps.def` from `from` (null: from the
 * start) until every row is done; resolves with the final state.
 */
export async function runBackfill(deps: BackfillDeps, from: BackfillState | null): Promise<BackfillState> {
    const { client, def, metaBucket, batchSize, retrying } = deps;
    const state: BackfillState =
        from && from.version === def.version
            ? { ...from, done: false }
            : { version: def.version, lastId: 0, done: false, scanned: 0, rewritten: 0, startedAt: new Date().toISOString() };
    const t0 = Date.now();
    let scannedHere = 0;
    const progress = (): BackfillProgress => {
        const secs = (Date.now() - t0) / 1000;
        return { ...state, rate: secs > 0 ? Math.round(scannedHere / secs) : 0 };
    };
    deps.onProgress(progress());
    for (;;) {
        const rows = await retrying(`backfill ${def.name}: read`, () =>
            client.findAll(def.name, afterId({ all: true }, state.lastId, def), {
                limit: batchSize,
                sort: { attribute: '_id', order: 'ASC' },
            }),
        );
        const stale = rows.filter((r) => staleIndexCopies(def, r.value).length > 0);
        if (stale.length > 0) {
            state.rewritten += await retrying(`backfill ${def.name}: write`, () => rewriteStale(client, def, stale));
        }
        const last = rows[rows.length - 1];
        if (last) {
            state.lastId = Number(last._id);
        }
        state.scanned += rows.length;
        scannedHere += rows.length;
        if (rows.length < batchSize) {
            state.done = true;
            state.finishedAt = new Date().toISOString();
        }
        await retrying(`backfill ${def.name}: save progress`, () => saveBackfillState(client, metaBucket, def.name, state));
        deps.onProgress(progress());
        if (state.done) {
            return state;
        }
    }
}

/** A row as read: what a conditional rewrite needs of it. */
export type RowRead = Pick<MorayObject, 'key' | 'value' | '_etag'>;

/**
 * Rewrite `rows` (as read, with their etags) with their copies set, in one
 * Moray batch conditional on every etag; returns how many were written. When
 * someone wrote one of them meanwhile, each is done on its own from a fresh
 * read.
 */
export async function rewriteStale(client: MorayClient, def: BucketDef, rows: readonly RowRead[]): Promise<number> {
    if (await rewriteBatch(client, def, rows)) {
        return rows.length;
    }
    let n = 0;
    for (const r of rows) {
        n += await rewriteOne(client, def, r.key);
    }
    return n;
}

/**
 * Rewrite `rows` with their copies set, each only if it still has the etag
 * it was read with: a row written meanwhile (or deleted) is left to whoever
 * wrote it. Returns how many were written.
 */
export async function rewriteIfUnchanged(client: MorayClient, def: BucketDef, rows: readonly RowRead[]): Promise<number> {
    if (await rewriteBatch(client, def, rows)) {
        return rows.length;
    }
    let n = 0;
    for (const r of rows) {
        try {
            await client.putObject(def.name, r.key, withIndexCopies(def, r.value), { etag: r._etag });
            n++;
        } catch (err) {
            if (!(err instanceof EtagConflictError || err instanceof NotFoundError)) {
                throw err;
            }
        }
    }
    return n;
}

/** One batch of conditional puts; false when a row's etag no longer matched (nothing written then). */
async function rewriteBatch(client: MorayClient, def: BucketDef, rows: readonly RowRead[]): Promise<boolean> {
    if (rows.length === 0) {
        return true;
    }
    const reqs: MorayBatchRequest[] = rows.map((r) => ({
        operation: 'put',
        bucket: def.name,
        key: r.key,
        value: withIndexCopies(def, r.value),
        options: { etag: r._etag },
    }));
    try {
        await client.batch(reqs);
        return true;
    } catch (err) {
        if (!(err instanceof EtagConflictError || err instanceof NotFoundError)) {
            throw err;
        }
        return false;
    }
}

async function rewriteOne(client: MorayClient, def: BucketDef, key: string): Promise<number> {
    for (;;) {
        const cur = await client.getObject(def.name, key);
        if (!cur || staleIndexCopies(def, cur.value).length === 0) {
            return 0;
        }
        try {
            await client.putObject(def.name, key, withIndexCopies(def, cur.value), { etag: cur._etag });
            return 1;
        } catch (err) {
            if (!(err instanceof EtagConflictError)) {
                throw err;
            }
        }
    }
}
