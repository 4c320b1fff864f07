// The store every write of the service goes through, once GetConfig's cache
// watches it (config-cache.ts): it forwards each write to the store it
// wraps and, once the write has settled, whether it succeeded or not, tells
// the cache which object it was about.

import type { BucketName } from '../stor/buckets.js';
import { ForwardingStore } from '../stor/forwarding.js';
import type { BatchOp, DelOptions, JsonObject, PutOptions, Store, Stored } from '../stor/store.js';

/** What hears of every settled write (the config cache). */
export interface WriteListener {
    noteWrite(bucket: BucketName, uuid: string): void;
}

/** The store every write of the service goes through: each one is reported to the cache once settled. */
export class WatchedStore extends ForwardingStore {
    constructor(
        private readonly store: Store,
        private readonly cache: WriteListener,
    ) {
        super();
    }

    get inner(): Store {
        return this.store;
    }

    override async put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        try {
            return await this.store.put(bucket, value, opts);
        } finally {
            this.cache.noteWrite(bucket, String(value.uuid));
        }
    }

    override async del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        try {
            await this.store.del(bucket, uuid, opts);
        } finally {
            this.cache.noteWrite(bucket, uuid);
        }
    }

    override async batch(ops: BatchOp[]): Promise<void> {
        try {
            await this.store.batch(ops);
        } finally {
            for (const op of ops) {
                this.cache.noteWrite(op.bucket, op.op === 'put' ? String(op.value.uuid) : op.uuid);
            }
        }
    }
}
