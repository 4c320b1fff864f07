// The backfill of derived index fields in a Moray bucket (migration 1 of
// migrations.ts), and the conditional rewrite of rows it shares.
//
// Moray fills an index column only from a top-level field of the stored
// value, so a row written before SAPI kept top-level copies (an instance
// written by SAPI 2.1.2 has its server and image only inside `params`) is
// invisible to a search on that column, reindexed or not. The backfill reads
// the bucket in `_id` order and rewrites each such row with its copies set:
// a put conditional on the etag it read, many rows per Moray batch. A row
// changed meanwhile is read again and redone on its own.
//
// Its progress is a migration's (migrations.ts: saved after every batch, a
// restart resumes where the previous run stopped). An earlier SAPI-TS kept
// it under `backfill.<bucket>` in this file's shape (BackfillState): that
// key is still read, and kept up to date beside the migration's own.
//
// The rewrite itself (rewriteRows, rewriteStale, rewriteIfUnchanged) is
// shared with the two that repair rows SAPI 2.1.2 keeps writing once the
// backfill is done: the startup and periodic sweep (sweep.ts) and the change
// feed's repairer (repair.ts).

import { staleIndexCopies, withIndexCopies, type BucketDef } from '../buckets.js';
import { EtagConflictError, NotFoundError } from '../errors.js';
import type { MorayBatchRequest, MorayClient, MorayObject } from './client.js';
import type { JsonObject } from '../store.js';

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

/** A state saved as `backfill.<bucket>`, or null when it is not one. */
/** The progress a saved backfill or migration state carries, as read back (absent counts: 0). */
export type SavedProgress = Pick<BackfillState, 'done' | 'scanned' | 'rewritten' | 'startedAt' | 'finishedAt'>;

export function savedProgress(s: Partial<SavedProgress>): SavedProgress {
    return {
        done: s.done === true,
        scanned: Number(s.scanned ?? 0),
        rewritten: Number(s.rewritten ?? 0),
        // Unknown: the earliest time there is (a sweep then starts from the beginning).
        startedAt: String(s.startedAt ?? new Date(0).toISOString()),
        ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
    };
}

export function parseBackfillState(text: string): BackfillState | null {
    try {
        const s = JSON.parse(text) as Partial<BackfillState>;
        if (typeof s.version !== 'number' || typeof s.lastId !== 'number') {
            return null;
        }
        return { version: s.version, lastId: s.lastId, ...savedProgress(s) };
    } catch {
        return null;
    }
}

/** A row as read: what a conditional rewrite needs of it. */
export type RowRead = Pick<MorayObject, 'key' | 'value' | '_etag'>;

/** How a row is rewritten: its new value, or null when it needs nothing. */
export type RowFix = (value: JsonObject) => JsonObject | null;

/** `def`'s rows given their index copies (null: they have them). */
export function copiesFix(def: BucketDef): RowFix {
    return (value) => (staleIndexCopies(def, value).length > 0 ? withIndexCopies(def, value) : null);
}

/**
 * Rewrite `rows` (as read, with their etags) as `fix` says, in one Moray
 * batch conditional on every etag; returns how many were written. When
 * someone wrote one of them meanwhile, each is done on its own from a fresh
 * read.
 */
export async function rewriteRows(client: MorayClient, bucket: string, rows: readonly RowRead[], fix: RowFix): Promise<number> {
    if (await rewriteBatch(client, bucket, rows, fix)) {
        return rows.filter((r) => fix(r.value) !== null).length;
    }
    let n = 0;
    for (const r of rows) {
        n += await rewriteOne(client, bucket, r.key, fix);
    }
    return n;
}

/** Rewrite `rows` of `def` with their copies set (rewriteRows). */
export function rewriteStale(client: MorayClient, def: BucketDef, rows: readonly RowRead[]): Promise<number> {
    return rewriteRows(client, def.name, rows, copiesFix(def));
}

/**
 * Rewrite `rows` with their copies set, each only if it still has the etag
 * it was read with: a row written meanwhile (or deleted) is left to whoever
 * wrote it. Returns how many were written.
 */
export async function rewriteIfUnchanged(client: MorayClient, def: BucketDef, rows: readonly RowRead[]): Promise<number> {
    const fix = copiesFix(def);
    if (await rewriteBatch(client, def.name, rows, fix)) {
        return rows.filter((r) => fix(r.value) !== null).length;
    }
    let n = 0;
    for (const r of rows) {
        const value = fix(r.value);
        if (value === null) {
            continue;
        }
        try {
            await client.putObject(def.name, r.key, value, { etag: r._etag });
            n++;
        } catch (err) {
            if (!(err instanceof EtagConflictError || err instanceof NotFoundError)) {
                throw err;
            }
        }
    }
    return n;
}

/** A row a batch of rewrites ends with: its `_mtime`, read back, is at or after every write of the batch. */
export interface BatchStamp {
    bucket: string;
    key: string;
}

/** What rewriteRange wrote. */
export interface RangeWrite {
    /** Rows `fix` changed and that were written. */
    rewritten: number;
    /** Keys read and left as they were (fix changed nothing). */
    untouched: string[];
    /**
     * The `_mtime` of the batch's stamp: a write to one of the rewritten
     * rows stamped at or after it is someone else's, made after this batch
     * committed. Null when it is not known (no stamp, or the rows were
     * written one by one).
     */
    since: number | null;
}

/**
 * Rewrite the rows of one read (with their etags) that `fix` changes, in
 * one Moray batch conditional on every etag, ending with a put of `stamp`
 * (whose `_mtime` is read back). A row someone wrote or deleted meanwhile
 * is read again (that row alone) and the batch sent again without it or
 * with its fresh value; so each row is read once and written once, unless
 * someone else writes it too.
 */
export async function rewriteRange(client: MorayClient, bucket: string, rows: readonly RowRead[], fix: RowFix, stamp?: BatchStamp): Promise<RangeWrite> {
    const todo = new Map<string, { etag: string; value: JsonObject }>();
    const untouched: string[] = [];
    for (const r of rows) {
        const value = fix(r.value);
        if (value === null) {
            untouched.push(r.key);
        } else {
            todo.set(r.key, { etag: r._etag, value });
        }
    }
    if (todo.size === 0) {
        return { rewritten: 0, untouched, since: null };
    }
    for (let attempt = 0; ; attempt++) {
        const reqs: MorayBatchRequest[] = [...todo].map(([key, t]) => ({ operation: 'put', bucket, key, value: t.value, options: { etag: t.etag } }));
        if (stamp && reqs.length > 0) {
            reqs.push({ operation: 'put', bucket: stamp.bucket, key: stamp.key, value: { value: new Date().toISOString() } });
        }
        if (reqs.length === 0) {
            return { rewritten: 0, untouched, since: null };
        }
        try {
            await client.batch(reqs);
            break;
        } catch (err) {
            if (!(err instanceof EtagConflictError || err instanceof NotFoundError)) {
                throw err;
            }
            if (!todo.has(err.key) || attempt >= rows.length) {
                // Moray did not say which row (or kept saying): one by one, from fresh reads.
                let n = 0;
                for (const key of todo.keys()) {
                    n += await rewriteOne(client, bucket, key, fix);
                }
                return { rewritten: n, untouched, since: null };
            }
            // Written (or deleted) since it was read: that row again, as it is now.
            const cur = await client.getObject(bucket, err.key);
            const value = cur ? fix(cur.value) : null;
            if (!cur || value === null) {
                // Someone else gave it its new value: a later change to it is looked for like an untouched row's.
                todo.delete(err.key);
                untouched.push(err.key);
            } else {
                todo.set(err.key, { etag: cur._etag, value });
            }
        }
    }
    let since: number | null = null;
    if (stamp) {
        const got = await client.getObject(stamp.bucket, stamp.key);
        const mtime = Number(got?._mtime);
        since = Number.isFinite(mtime) ? mtime : null;
    }
    return { rewritten: todo.size, untouched, since };
}

/** One batch of conditional puts of the rows `fix` changes; false when a row's etag no longer matched (nothing written then). */
async function rewriteBatch(client: MorayClient, bucket: string, rows: readonly RowRead[], fix: RowFix): Promise<boolean> {
    const reqs: MorayBatchRequest[] = [];
    for (const r of rows) {
        const value = fix(r.value);
        if (value !== null) {
            reqs.push({ operation: 'put', bucket, key: r.key, value, options: { etag: r._etag } });
        }
    }
    if (reqs.length === 0) {
        return true;
    }
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

async function rewriteOne(client: MorayClient, bucket: string, key: string, fix: RowFix): Promise<number> {
    for (;;) {
        const cur = await client.getObject(bucket, key);
        const value = cur ? fix(cur.value) : null;
        if (!cur || value === null) {
            return 0;
        }
        try {
            await client.putObject(bucket, key, value, { etag: cur._etag });
            return 1;
        } catch (err) {
            if (!(err instanceof EtagConflictError)) {
                throw err;
            }
        }
    }
}
