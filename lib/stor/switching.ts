// The store the service holds for its whole life, whose backend can change
// under it: the embedded store in proto mode, Moray (with the embedded
// store as its cache) after the switch to full mode, and none at all while
// the service starts on a Moray it cannot reach yet and has nothing cached:
// then every operation fails as unavailable (503), never as "empty".
//
// Everything is forwarded to the backend of the moment, the JSON list fast
// path included: it is offered exactly while that backend offers it.

import type { BucketName } from './buckets.js';
import { StoreUnavailableError } from './errors.js';
import { ForwardingStore } from './forwarding.js';
import type { BatchOp, Filter, JsonObject, Page, Store, StoreCapabilities, Stored } from './store.js';

export class SwitchingStore extends ForwardingStore {
    private target: Store;

    constructor(initial: Store | null, waitingFor = 'moray') {
        super();
        this.target = initial ?? new StartingStore(waitingFor);
    }

    /** Serve from `store` from now on. */
    switchTo(store: Store): void {
        this.target = store;
    }

    /** The backend served from now. */
    get inner(): Store {
        return this.target;
    }
}

/**
 * The backend before there is one: it holds nothing and serves nothing.
 * Every read and write fails as unavailable; init() and close() have
 * nothing to do, and ping() says not ready.
 */
class StartingStore implements Store {
    readonly name = 'Starting';

    constructor(private readonly waitingFor: string) {}

    capabilities(): StoreCapabilities {
        return {};
    }

    private unavailable(): Promise<never> {
        return Promise.reject(new StoreUnavailableError(`the service is starting: waiting for ${this.waitingFor} to learn its mode and data`));
    }

    init(): Promise<void> {
        return Promise.resolve();
    }

    ping(): Promise<boolean> {
        return Promise.resolve(false);
    }

    get<T extends JsonObject>(_bucket: BucketName, _uuid: string): Promise<Stored<T> | null> {
        return this.unavailable();
    }

    put<T extends JsonObject>(_bucket: BucketName, _value: T): Promise<Stored<T>> {
        return this.unavailable();
    }

    del(_bucket: BucketName, _uuid: string): Promise<void> {
        return this.unavailable();
    }

    find<T extends JsonObject>(_bucket: BucketName, _filter: Filter): Promise<Page<T>> {
        return this.unavailable();
    }

    async *iterate<T extends JsonObject>(_bucket: BucketName, _filter: Filter): AsyncIterable<Stored<T>[]> {
        yield await this.unavailable();
    }

    count(_bucket: BucketName, _filter: Filter): Promise<number> {
        return this.unavailable();
    }

    batch(_ops: BatchOp[]): Promise<void> {
        return this.unavailable();
    }

    getMeta(_key: string): Promise<string | null> {
        return this.unavailable();
    }

    setMeta(_key: string, _value: string): Promise<void> {
        return this.unavailable();
    }

    close(): Promise<void> {
        return Promise.resolve();
    }
}
