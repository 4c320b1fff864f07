// The base of every store decorator (local cache, multi-DC, switching,
// metrics). Each operation forwards to `inner`, read again on every call,
// so a decorator overrides only the operations it changes, and one whose
// backend changes at run time (SwitchingStore) only changes what `inner`
// returns.
//
// What the store can do besides Store (capabilities()) is, by default, what
// the inner store offers at that moment; a decorator that answers some
// operation its own way drops or wraps the matching capability.

import type { BucketName } from './buckets.js';
import type { BatchOp, DelOptions, Filter, JsonLists, JsonObject, Page, PageRequest, PutOptions, Store, StoreCapabilities, Stored } from './store.js';

export abstract class ForwardingStore implements Store {
    /** The decorated store. Read on every call: it may change. */
    abstract get inner(): Store;

    get name(): string {
        return this.inner.name;
    }

    init(): Promise<void> {
        return this.inner.init();
    }

    ping(): Promise<boolean> {
        return this.inner.ping();
    }

    get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        return this.inner.get<T>(bucket, uuid);
    }

    put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        return this.inner.put(bucket, value, opts);
    }

    del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        return this.inner.del(bucket, uuid, opts);
    }

    find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        return this.inner.find<T>(bucket, filter, page);
    }

    iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize?: number): AsyncIterable<Stored<T>[]> {
        return this.inner.iterate<T>(bucket, filter, chunkSize);
    }

    count(bucket: BucketName, filter: Filter): Promise<number> {
        return this.inner.count(bucket, filter);
    }

    batch(ops: BatchOp[]): Promise<void> {
        return this.inner.batch(ops);
    }

    getMeta(key: string): Promise<string | null> {
        return this.inner.getMeta(key);
    }

    setMeta(key: string, value: string): Promise<void> {
        return this.inner.setMeta(key, value);
    }

    close(): Promise<void> {
        return this.inner.close();
    }

    /**
     * The inner store's, untouched: right only while what they stand for
     * is forwarded untouched too. A decorator that answers lists its own
     * way drops jsonLists or wraps it to keep its behaviour.
     */
    capabilities(): StoreCapabilities {
        return this.inner.capabilities();
    }
}

/**
 * The JSON list fast path of `store` as it stands now, or null. Ask again
 * for every request: the backend behind a SwitchingStore can change.
 */
export function jsonLists(store: Store): JsonLists | null {
    return store.capabilities().jsonLists ?? null;
}
