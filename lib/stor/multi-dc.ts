// Multi-DC (sapi-api.md §8): a non-master DC also reads and writes the
// master DC's Moray. Gets look locally, then in the master; objects with
// `master: true` are written to the master; deletes try local, then master.
// Lists are local; `include_master` lists append the master's (model/lists).

import type { BucketName } from './buckets.js';
import { NotFoundError } from './errors.js';
import type { BatchOp, DelOptions, Filter, JsonObject, Page, PageRequest, PutOptions, Store, Stored } from './store.js';

export class MultiDcStore implements Store {
    readonly name: string;

    constructor(
        readonly local: Store,
        readonly master: Store,
    ) {
        this.name = `${local.name}+Master`;
    }

    async init(): Promise<void> {
        await this.local.init();
        await this.master.init();
    }

    ping(): Promise<boolean> {
        return this.local.ping();
    }

    async get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        return (await this.local.get<T>(bucket, uuid)) ?? this.master.get<T>(bucket, uuid);
    }

    put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        return (value.master === true ? this.master : this.local).put(bucket, value, opts);
    }

    async del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        try {
            await this.local.del(bucket, uuid, opts);
        } catch (err) {
            if (!(err instanceof NotFoundError)) {
                throw err;
            }
            await this.master.del(bucket, uuid, opts);
        }
    }

    async batch(ops: BatchOp[]): Promise<void> {
        const toMaster = ops.filter((o) => o.op === 'put' && o.value.master === true);
        if (toMaster.length > 0) {
            await this.master.batch(toMaster);
        }
        const rest = ops.filter((o) => !toMaster.includes(o));
        if (rest.length > 0) {
            await this.local.batch(rest);
        }
    }

    find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        return this.local.find<T>(bucket, filter, page);
    }

    iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize?: number): AsyncIterable<Stored<T>[]> {
        return this.local.iterate<T>(bucket, filter, chunkSize);
    }

    count(bucket: BucketName, filter: Filter): Promise<number> {
        return this.local.count(bucket, filter);
    }

    getMeta(key: string): Promise<string | null> {
        return this.local.getMeta(key);
    }

    setMeta(key: string, value: string): Promise<void> {
        return this.local.setMeta(key, value);
    }

    async close(): Promise<void> {
        await this.local.close();
        await this.master.close();
    }
}

/** The master store behind any decorators (cache, metrics), if multi-DC. */
export function masterOf(store: Store): Store | null {
    let s: Store | undefined = store;
    while (s && !(s instanceof MultiDcStore)) {
        s = (s as { inner?: Store }).inner;
    }
    return s instanceof MultiDcStore ? s.master : null;
}
