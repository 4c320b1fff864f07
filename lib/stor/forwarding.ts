// The base of every store decorator (local cache, multi-DC, switching,
// metrics). Each operation forwards to `inner`, read again on every call,
// so a decorator overrides only the operations it changes, and one whose
// backend changes at run time (SwitchingStore) only changes what `inner`
// returns.
//
// The JSON list fast path is not part of Store: jsonLists(store) asks the
// outermost decorator, and each decorator answers for itself, by default
// with what its inner store offers at that moment.

import type { BucketName } from './buckets.js';
import type { BatchOp, DelOptions, Filter, JsonLists, JsonObject, Page, PageRequest, PutOptions, Store, Stored } from './store.js';

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
     * The JSON list fast path through this decorator, or null. By default
     * the inner store's, untouched, which is right only while find() and
     * iterate() are forwarded untouched too: a decorator that answers lists
     * differently must override this (null, or a wrapper that keeps its
     * behaviour).
     */
    offerJsonLists(): JsonLists | null {
        return jsonLists(this.inner);
    }
}

/** Whether `store` itself implements the JSON list fast path (a backend). */
export function hasJsonLists(store: Store): store is Store & JsonLists {
    const s = store as Partial<JsonLists>;
    return typeof s.findJson === 'function' && typeof s.iterateJson === 'function';
}

/**
 * The JSON list fast path of `store` as it stands now, through its
 * decorators, or null when the backend serving now lacks it (or a
 * decorator on the way answers lists its own way). Ask again for every
 * request: the backend behind a SwitchingStore can change.
 */
export function jsonLists(store: Store): JsonLists | null {
    if (store instanceof ForwardingStore) {
        return store.offerJsonLists();
    }
    return hasJsonLists(store) ? store : null;
}
