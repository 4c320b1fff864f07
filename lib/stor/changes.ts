// What a store tells about changes made by anyone (other processes
// included), for whoever keeps copies of stored objects (GetConfig's cache).
// Moray's change feed (stor/moray/feed.ts) tells; the model's cache listens.

import type { BucketName } from './buckets.js';

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
