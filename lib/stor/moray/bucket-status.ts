// What the bucket initializer (buckets-init.ts) reports of each bucket, and
// what it is built from.

import type { BucketDef } from '../buckets.js';
import type { BackfillProgress } from './backfill.js';
import type { MorayBucketDef } from './bucket-setup.js';
import type { MorayClient } from './client.js';
import type { Migration, MigrationProgress } from './migrations.js';
import type { InitLogger } from './retrier.js';
import type { SweepProgress } from './sweep.js';

/** Where a bucket stands: 'backfilling' and 'migrating' while one of its migrations runs (the migration says which). */
export type BucketPhase = 'unknown' | 'reindexing' | 'migrating' | 'backfilling' | 'sweeping' | 'ready';

export interface BucketStatus {
    phase: BucketPhase;
    /** Version of the bucket in Moray, once known. */
    version: number | null;
    /** Index fields not (yet) usable in a server-side filter. */
    pendingFields: string[];
    /** Rows reindexed by this process. */
    reindexed: number;
    /** The derived-field backfill (the migration that fills them), for buckets that have derived fields. */
    backfill: BackfillProgress | null;
    /** The last (or current) sweep of rows changed since the mark, for buckets that have derived fields. */
    sweep: SweepProgress | null;
    /** The bucket's data migrations, in order: pending, running and done. */
    migrations: MigrationProgress[];
}

export interface BucketsInitOptions {
    client: MorayClient;
    buckets: readonly (BucketDef | MorayBucketDef)[];
    log?: InitLogger | undefined;
    /** Rows per reindexObjects call (default 100). */
    reindexBatchSize?: number | undefined;
    /** Rows per migration batch (default 1000: one findObjects page, one Moray batch, one PostgreSQL transaction). */
    backfillBatchSize?: number | undefined;
    /** Migration batches whose writes may be under way at once, while the next is read (default 4). */
    backfillDepth?: number | undefined;
    /** Rows per sweep page (default: backfillBatchSize). */
    sweepPageSize?: number | undefined;
    /** Between sweeps after start-up (default SWEEP_EVERY_MS; 0: none). */
    sweepEveryMs?: number | undefined;
    /** The bucket holding service settings and migration progress. */
    metaBucket?: string | undefined;
    /** The data migrations (default MIGRATIONS); those of buckets not set up here are left alone. */
    migrations?: readonly Migration[] | undefined;
    /** Backoff between retries (default 100 ms doubling to 5 s). */
    retryMinDelayMs?: number | undefined;
    retryMaxDelayMs?: number | undefined;
    /** Buckets deleted when present (default ['sapi_history']). */
    legacyBuckets?: readonly string[] | undefined;
    /**
     * Data migrations wait for this first (the local cache's first copy,
     * which answers searches exactly while they run; it copies faster
     * before they load Moray with writes). Never rejects.
     */
    migrationsAfter?: (() => Promise<void>) | undefined;
}
