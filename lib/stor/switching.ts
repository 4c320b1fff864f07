// The store the service holds for its whole life, whose backend can change
// under it: the embedded store in proto mode, Moray (with the embedded
// store as its cache) after the switch to full mode, and none at all while
// the service starts on a Moray it cannot reach yet and has nothing cached:
// then every operation fails as unavailable (503), never as "empty".

import type { BucketName } from './buckets.js';
import { StoreUnavailableError } from './errors.js';
import type { BatchOp, DelOptions, Filter, JsonObject, JsonPage, Page, PageRequest, PutOptions, Store, Stored } from './store.js';

export class SwitchingStore implements Store {
    private target: Store | null;

    constructor(
        initial: Store | null,
        private readonly waitingFor = 'moray',
    ) {
        this.target = initial;
    }

    /** Serve from `store` from now on. */
    switchTo(store: Store): void {
        this.target = store;
    }

    /** The backend served from now (decorator chains are walked through `inner`). */
    get inner(): Store | undefined {
        return this.target ?? undefined;
    }

    get name(): string {
        return this.target?.name ?? 'Starting';
    }

    private use(): Store {
        if (!this.target) {
            throw new StoreUnavailableError(`the service is starting: waiting for ${this.waitingFor} to learn its mode and data`);
        }
        return this.target;
    }

    async init(): Promise<void> {
        await this.target?.init();
    }

    async ping(): Promise<boolean> {
        return this.target ? this.target.ping() : false;
    }

    get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        return this.use().get<T>(bucket, uuid);
    }

    put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        return this.use().put(bucket, value, opts);
    }

    del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        return this.use().del(bucket, uuid, opts);
    }

    find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        return this.use().find<T>(bucket, filter, page);
    }

    iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize?: number): AsyncIterable<Stored<T>[]> {
        return this.use().iterate<T>(bucket, filter, chunkSize);
    }

    count(bucket: BucketName, filter: Filter): Promise<number> {
        return this.use().count(bucket, filter);
    }

    /** The backend's JSON fast path when it has one, else built from find(). */
    async findJson(bucket: BucketName, filter: Filter, page: PageRequest | undefined, omit: readonly string[]): Promise<JsonPage> {
        const s = this.use();
        if (s.findJson) {
            return s.findJson(bucket, filter, page, omit);
        }
        const found = await s.find(bucket, filter, page);
        return { json: found.items.map((x) => toJson(x.value, omit)), total: found.total };
    }

    async *iterateJson(bucket: BucketName, filter: Filter, chunkSize: number, omit: readonly string[]): AsyncIterable<string[]> {
        const s = this.use();
        if (s.iterateJson) {
            yield* s.iterateJson(bucket, filter, chunkSize, omit);
            return;
        }
        for await (const chunk of s.iterate(bucket, filter, chunkSize)) {
            yield chunk.map((x) => toJson(x.value, omit));
        }
    }

    batch(ops: BatchOp[]): Promise<void> {
        return this.use().batch(ops);
    }

    getMeta(key: string): Promise<string | null> {
        return this.use().getMeta(key);
    }

    setMeta(key: string, value: string): Promise<void> {
        return this.use().setMeta(key, value);
    }

    async close(): Promise<void> {
        await this.target?.close();
    }
}

function toJson(value: JsonObject, omit: readonly string[]): string {
    if (omit.length === 0) {
        return JSON.stringify(value);
    }
    const out: JsonObject = { ...value };
    for (const k of omit) {
        delete out[k];
    }
    return JSON.stringify(out);
}
