// A Store over Moray with a local SQLite copy (the role of 2.1.2's
// moray_local). Reads go to Moray and fall back to the local copy while
// Moray is unreachable, so config-agent's GetConfig keeps working; writes
// go to Moray first (a failure is a 503, nothing half-written) and then to
// the copy. sync() refreshes the copy from Moray (at start, hourly, and on
// POST /cache). A copy that has never been filled completely (a new cache
// file) is never answered from: it would answer as if the DC were empty,
// so until the first sync ends an unreachable Moray is a 503.
//
// The copy is written only where it differs from what Moray answered: a
// read of an unchanged object, or a refresh of an unchanged bucket, writes
// nothing. "Differs" compares the stored JSON text with the text the copy
// would store, not etags: the copy's etag is a hash of its own text and
// never equals Moray's etag, and keeping Moray's etag beside each row would
// need a column the embedded store does not have (and batches return no
// etags). The comparison is a primary-key read of the local file, cheaper
// than the write it saves. Objects Moray no longer has are always deleted.
// The Moray etag of what was last mirrored for each object is remembered
// in memory, so a read that finds an object as it was last mirrored does
// not even compare (GetConfig on Moray reads its instance every second).

import type Logger from 'bunyan';

import { ALL_BUCKETS, type BucketName } from './buckets.js';
import { copyChunks } from './copy.js';
import { NotFoundError, StoreUnavailableError } from './errors.js';
import { ForwardingStore } from './forwarding.js';
import type { SqliteStore } from './sqlite/index.js';
import {
    ALL,
    type BatchOp,
    type DelOptions,
    type Filter,
    type JsonObject,
    type Page,
    type PageRequest,
    type PutOptions,
    type Store,
    type StoreCapabilities,
    type Stored,
} from './store.js';

/** Set in the local copy once a sync() has copied every bucket. */
export const CACHE_FILLED_KEY = 'cache.filled_at';

/** Objects whose mirrored Moray etag is remembered, at most. */
const MAX_MIRRORED = 500_000;

export class CachedStore extends ForwardingStore {
    private filled: boolean | null = null;
    /** `<bucket>/<uuid>` → Moray's etag of the value the local copy was last given. */
    private readonly mirrored = new Map<string, string>();

    constructor(
        private readonly primary: Store,
        private readonly local: SqliteStore,
        private readonly log: Logger,
    ) {
        super();
    }

    /** The decorated store: Moray (ping() is forwarded to it as is). */
    get inner(): Store {
        return this.primary;
    }

    override get name(): string {
        return `${this.primary.name}+LocalCache`;
    }

    override async init(): Promise<void> {
        await this.local.init();
        await this.primary.init();
    }

    /**
     * Moray's, but no JSON lists: lists come from Moray, or from the local
     * copy while Moray is unreachable, and a fast path of either alone
     * would skip that choice.
     */
    override capabilities(): StoreCapabilities {
        const { jsonLists: _none, ...rest } = this.primary.capabilities();
        return rest;
    }

    /** Moray's answer; the local copy's while Moray is unreachable. */
    private async orLocal<R>(what: Record<string, unknown>, primary: () => Promise<R>, local: () => Promise<R>): Promise<R> {
        try {
            return await primary();
        } catch (err) {
            if (err instanceof StoreUnavailableError && (await this.isFilled())) {
                this.log.warn(what, 'moray unavailable: answering from the local cache');
                return local();
            }
            throw err;
        }
    }

    /** Whether the local copy has been filled completely at least once. */
    private async isFilled(): Promise<boolean> {
        if (this.filled !== true) {
            this.filled = (await this.local.getMeta(CACHE_FILLED_KEY)) !== null;
        }
        return this.filled;
    }

    override get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        return this.orLocal(
            { bucket, uuid },
            async () => {
                const got = await this.primary.get<T>(bucket, uuid);
                this.mirror(bucket, uuid, got);
                return got;
            },
            () => this.local.get<T>(bucket, uuid),
        );
    }

    override async put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        const out = await this.primary.put(bucket, value, opts);
        this.mirror(bucket, String(value.uuid), out);
        return out;
    }

    override async del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        await this.primary.del(bucket, uuid, opts);
        this.mirror(bucket, uuid, null);
    }

    override async batch(ops: BatchOp[]): Promise<void> {
        await this.primary.batch(ops);
        for (const op of ops) {
            if (op.op === 'put') {
                this.mirror(op.bucket, String(op.value.uuid), { value: op.value, etag: '' });
            } else {
                this.mirror(op.bucket, op.uuid, null);
            }
        }
    }

    override find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        return this.orLocal(
            { bucket },
            () => this.primary.find<T>(bucket, filter, page),
            () => this.local.find<T>(bucket, filter, page),
        );
    }

    /** From Moray; from the local copy if Moray fails before the first chunk. */
    override async *iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize?: number): AsyncIterable<Stored<T>[]> {
        let started = false;
        try {
            for await (const chunk of this.primary.iterate<T>(bucket, filter, chunkSize)) {
                started = true;
                yield chunk;
            }
        } catch (err) {
            if (started || !(err instanceof StoreUnavailableError) || !(await this.isFilled())) {
                throw err;
            }
            this.log.warn({ bucket }, 'moray unavailable: streaming from the local cache');
            yield* this.local.iterate<T>(bucket, filter, chunkSize);
        }
    }

    override count(bucket: BucketName, filter: Filter): Promise<number> {
        return this.orLocal(
            { bucket },
            () => this.primary.count(bucket, filter),
            () => this.local.count(bucket, filter),
        );
    }

    override getMeta(key: string): Promise<string | null> {
        return this.orLocal(
            { meta: key },
            () => this.primary.getMeta(key),
            () => this.local.getMeta(key),
        );
    }

    override async setMeta(key: string, value: string): Promise<void> {
        await this.primary.setMeta(key, value);
        await this.local.setMeta(key, value).catch(() => undefined);
    }

    override async close(): Promise<void> {
        await this.primary.close();
        await this.local.close();
    }

    /**
     * Copy every object from Moray into the local cache, writing only the
     * rows that differ; drop what Moray no longer has. `copied`: objects
     * read from Moray; `written`: rows of the copy inserted or updated.
     */
    async sync(): Promise<{ copied: number; written: number; dropped: number }> {
        let copied = 0;
        let written = 0;
        let dropped = 0;
        for (const def of ALL_BUCKETS) {
            const seen = await copyChunks(this.primary, def.name, 1000, (values) => {
                written += this.local.putIfChanged(def.name, values);
            });
            copied += seen.size;
            for await (const chunk of this.local.iterate(def.name, ALL, 1000)) {
                for (const s of chunk) {
                    const uuid = String(s.value.uuid);
                    if (!seen.has(uuid)) {
                        await this.local.del(def.name, uuid).catch(() => undefined);
                        dropped++;
                    }
                }
            }
        }
        await this.local.setMeta(CACHE_FILLED_KEY, new Date().toISOString());
        // The copy was written around mirror(): what it remembers no longer holds.
        this.mirrored.clear();
        this.filled = true;
        this.log.info({ copied, written, dropped }, 'local cache refreshed from moray');
        return { copied, written, dropped };
    }

    /**
     * Best-effort write-through of what Moray holds now (null: nothing);
     * a row that already holds it is not written again. A cache failure
     * never fails the request.
     */
    private mirror(bucket: BucketName, uuid: string, got: Stored | null): void {
        const key = `${bucket}/${uuid}`;
        if (got && got.etag !== '' && this.mirrored.get(key) === got.etag) {
            return;
        }
        this.mirrored.delete(key);
        try {
            if (got) {
                this.local.putIfChanged(bucket, [got.value]);
                if (got.etag !== '') {
                    if (this.mirrored.size >= MAX_MIRRORED) {
                        this.mirrored.clear();
                    }
                    this.mirrored.set(key, got.etag);
                }
            } else {
                this.local.delUnchecked(bucket, uuid);
            }
        } catch (err) {
            if (!(err instanceof NotFoundError)) {
                this.log.warn({ err, bucket, uuid }, 'local cache write failed');
            }
        }
    }
}
