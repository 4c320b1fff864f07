// Multi-DC: a DC that is not the master also reads and writes the master
// DC's Moray. Gets look locally, then in the master; objects with
// `master: true` are written to the master; deletes try local, then master.
// Everything else (lists, counts, settings, ping) is local; lists that ask
// for `include_master` append the master's themselves (model/lists).

import type { BucketName } from './buckets.js';
import { NotFoundError } from './errors.js';
import { ForwardingStore } from './forwarding.js';
import type { BatchOp, DelOptions, JsonObject, PutOptions, Store, StoreCapabilities, Stored } from './store.js';

export class MultiDcStore extends ForwardingStore {
    constructor(
        readonly local: Store,
        readonly master: Store,
    ) {
        super();
    }

    /** Forwarded to: the local store. */
    get inner(): Store {
        return this.local;
    }

    override get name(): string {
        return `${this.local.name}+Master`;
    }

    /**
     * The local store's lists, and the master; no change feed: the
     * master's writes are not in the local Moray, so a feed of it alone
     * would not tell everything GetConfig's cache keeps.
     */
    override capabilities(): StoreCapabilities {
        const { changeSource: _c, rowObserver: _r, changeMirror: _m, recentReads: _rr, ...rest } = this.local.capabilities();
        return { ...rest, master: this.master };
    }

    override async init(): Promise<void> {
        await this.local.init();
        await this.master.init();
    }

    override async get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        return (await this.local.get<T>(bucket, uuid)) ?? this.master.get<T>(bucket, uuid);
    }

    override put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        return (value.master === true ? this.master : this.local).put(bucket, value, opts);
    }

    override async del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        try {
            await this.local.del(bucket, uuid, opts);
        } catch (err) {
            if (!(err instanceof NotFoundError)) {
                throw err;
            }
            await this.master.del(bucket, uuid, opts);
        }
    }

    override async batch(ops: BatchOp[]): Promise<void> {
        const toMaster = ops.filter((o) => o.op === 'put' && o.value.master === true);
        if (toMaster.length > 0) {
            await this.master.batch(toMaster);
        }
        const rest = ops.filter((o) => !toMaster.includes(o));
        if (rest.length > 0) {
            await this.local.batch(rest);
        }
    }

    override async close(): Promise<void> {
        await this.local.close();
        await this.master.close();
    }
}

/** The master store of a multi-DC setup (through any decorators), or null. */
export function masterOf(store: Store): Store | null {
    return store.capabilities().master ?? null;
}
