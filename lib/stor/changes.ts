// What a store tells about changes made by anyone (other processes
// included), for whoever keeps copies of stored objects (GetConfig's cache).
// Moray's change feed (stor/moray/feed.ts) tells; the model's cache listens.

import type { BucketName } from './buckets.js';

/** A changed row, as the change feed needs it. */
export interface ChangedRow {
    key: string;
    value: Record<string, unknown>;
    mtime: number;
    etag: string;
}

/** What the change feed asks a store that keeps change stamps (Moray). */
export interface ChangeSource {
    /** Rows of `bucket` with `_mtime` ≥ `mtime`, oldest first, at most `limit`. */
    changedSince(bucket: string, mtime: number, limit: number): Promise<ChangedRow[]>;
    /** Delete tombstones with `_mtime` ≤ `mtime` (some of them: at most `limit`); resolves with how many. */
    pruneTombstones(mtime: number, limit: number): Promise<number>;
    /** Write the row `key` of the tombstones bucket (not a tombstone) and resolve with its `_mtime`. */
    stamp(key: string): Promise<number>;
}

/** Sees the rows each poll of the change feed reads. Must not block: it is called inside the poll. */
export interface RowObserver {
    rowsRead(bucket: string, rows: readonly ChangedRow[]): void;
}

/** Who is told. Times are on the sink's own clock. */
export interface ChangeSink {
    now(): number;
    /** `uuid` of `bucket` was written or deleted (by anyone). */
    changed(bucket: BucketName, uuid: string): void;
    /**
     * Every change committed before `startedAt` has been told, and every
     * change committed since `since` (the start of this chain) will be.
     */
    polled(startedAt: number, since: number): void;
}

/**
 * What the change feed offers a copy it keeps current (ChangeMirror): a
 * poll on demand, and which chain of polls is running. A chain is the run
 * of successful polls since the feed last started afresh; within one, every
 * change committed after the chain began is told.
 */
export interface FeedHandle {
    /**
     * Resolves once a poll that began after this call has succeeded and
     * told the mirror everything it read; rejects when that poll fails or
     * starts afresh. Concurrent callers share polls.
     */
    catchUp(): Promise<void>;
    /** The number of the chain whose first poll has begun (it changes when the feed starts afresh); null: none yet. */
    chain(): number | null;
}

/**
 * A copy of the stored objects that the change feed keeps current (the
 * local cache on Moray). The feed gives it the value of every row it tells
 * and every delete, then says the poll is over; it calls attach() with
 * itself before the first of those.
 */
export interface ChangeMirror {
    attach(feed: FeedHandle): void;
    /** Rows of `bucket` written by anyone, as stored, each told once per write. */
    apply(bucket: BucketName, rows: readonly ChangedRow[]): void;
    /** `uuid` of `bucket` was deleted by a SAPI that records deletes. */
    deleted(bucket: BucketName, uuid: string): void;
    /** A poll of chain `chain` that began at `startedAt` (the sink's clock) has been told entirely. */
    polled(chain: number, startedAt: number): void;
}
