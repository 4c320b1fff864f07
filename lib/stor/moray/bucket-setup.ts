// One Moray bucket brought to this SAPI's definition of it: created when
// missing, updated when Moray's copy is older (Moray then reindexes its
// rows, which the initializer drives), left alone when it is newer. Also
// how a definition is written as Moray's bucket config, and which index
// fields a bucket is still reindexing.

import type { BucketDef, IndexDef } from '../buckets.js';
import { StoreUnavailableError } from '../errors.js';
import { type MorayBucket, type MorayBucketConfig, type MorayClient, MorayRequestError } from './client.js';
import type { InitLogger, Retrier } from './retrier.js';

/** A bucket definition (any name: `sapi_meta` is not a BucketName). */
export interface MorayBucketDef {
    name: string;
    index: Record<string, IndexDef>;
    version: number;
    /** Index fields copied from nested values (see buckets.ts). */
    derived?: Record<string, readonly string[]> | undefined;
}

export function bucketConfig(def: MorayBucketDef | BucketDef): MorayBucketConfig {
    const index: Record<string, IndexDef> = {};
    for (const [field, d] of Object.entries(def.index)) {
        index[field] = d.unique ? { type: d.type, unique: true } : { type: d.type };
    }
    return { index, options: { version: def.version } };
}

/** Create or update one bucket; returns it as Moray now has it. */
export async function setupBucket(client: MorayClient, log: InitLogger, def: MorayBucketDef): Promise<{ bucket: MorayBucket; created: boolean }> {
    const cfg = bucketConfig(def);
    let b = await client.getBucket(def.name);
    if (!b) {
        let created = true;
        try {
            await client.createBucket(def.name, cfg);
            log.info({ bucket: def.name, version: def.version }, 'created moray bucket');
        } catch (err) {
            // Another SAPI created it first: fine (it records the backfill).
            if (!(err instanceof MorayRequestError && err.morayName === 'BucketConflictError')) {
                throw err;
            }
            created = false;
        }
        b = await client.getBucket(def.name);
        if (!b) {
            throw new StoreUnavailableError(`moray bucket ${def.name} missing right after creation`);
        }
        return { bucket: b, created };
    }
    if (b.version < def.version) {
        try {
            await client.updateBucket(def.name, cfg);
            log.info({ bucket: def.name, from: b.version, to: def.version }, 'updated moray bucket; reindexing follows');
        } catch (err) {
            // Another SAPI updated it first: fine.
            if (!(err instanceof MorayRequestError && err.morayName === 'BucketVersionError')) {
                throw err;
            }
        }
        b = await client.getBucket(def.name);
        if (!b) {
            throw new StoreUnavailableError(`moray bucket ${def.name} disappeared during update`);
        }
    } else if (b.version > def.version) {
        log.warn({ bucket: def.name, stored: b.version, ours: def.version }, 'moray bucket is newer than this SAPI; leaving it as is');
    }
    return { bucket: b, created: false };
}

export function reindexFields(b: MorayBucket): string[] {
    return Object.values(b.reindexActive).flat();
}

/**
 * Moray's reindexObjects on `bucket`, a batch at a time (each retried by
 * `retry`), until a call processes nothing; `onBatch` hears each count.
 */
export async function reindexAll(
    client: MorayClient,
    bucket: string,
    batchSize: number,
    retry: Retrier,
    log: InitLogger,
    onBatch: (processed: number) => void,
): Promise<void> {
    let total = 0;
    for (;;) {
        const res = await retry.retrying(`reindex bucket ${bucket}`, () => client.reindexObjects(bucket, batchSize));
        total += res.processed;
        onBatch(res.processed);
        if (res.processed === 0) {
            return;
        }
        log.info({ bucket, processed: res.processed, total }, 'reindexing moray bucket: progress');
    }
}
