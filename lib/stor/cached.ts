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
//
// With a change feed (on Moray, given by the composition through
// capabilities().changeMirror), the copy is kept current and answers lists,
// counts and GetConfig's reads when it provably holds what Moray holds
// (mirror.ts says when). Reads that return etags (get, find, iterate) stay
// on Moray: the copy's etags are its own, and a conditional write needs
// Moray's.

import type Logger from 'bunyan';

import { ALL_BUCKETS, type BucketName } from './buckets.js';
import { copyChunks } from './copy.js';
import { StoreUnavailableError } from './errors.js';
import { ForwardingStore } from './forwarding.js';
import { LocalMirror } from './mirror.js';
import type { SqliteStore } from './sqlite/index.js';
import {
    ALL,
    type BatchOp,
    type DelOptions,
    type Filter,
    type JsonLists,
    type JsonObject,
    type JsonPage,
    type JsonStream,
    type Page,
    type PageRequest,
    type PutOptions,
    type Store,
    type StoreCapabilities,
    type Stored,
} from './store.js';

/** Set in the local copy once a sync() has copied every bucket. */
export const CACHE_FILLED_KEY = 'cache.filled_at';

export interface SyncResult {
    copied: number;
    written: number;
    dropped: number;
}

export interface SyncOptions {
    /**
     * Wait up to this long for the change feed to begin its chain first
     * (the copy at start-up: one made before would not count for lists).
     */
    awaitFeedMs?: number;
}

/** Objects whose mirrored Moray etag is remembered, at most. */
const MAX_MIRRORED = 500_000;

export interface CachedStoreOptions {
    /** Index fields of `bucket` Moray cannot search by yet (a bucket update being reindexed). */
    pendingFields?: (bucket: BucketName) => ReadonlySet<string>;
}

/** The fields a filter names. */
function fieldsOf(f: Filter, out = new Set<string>()): Set<string> {
    if ('eq' in f) {
        out.add(f.eq.field);
    } else if ('in' in f) {
        out.add(f.in.field);
    } else if ('and' in f) {
        for (const p of f.and) {
            fieldsOf(p, out);
        }
    }
    return out;
}

/** `value` as JSON without the top-level keys `omit`. */
function jsonWithout(value: JsonObject, omit: readonly string[]): string {
    if (omit.length === 0) {
        return JSON.stringify(value);
    }
    const copy: JsonObject = { ...value };
    for (const k of omit) {
        delete copy[k];
    }
    return JSON.stringify(copy);
}

export class CachedStore extends ForwardingStore {
    private filled: boolean | null = null;
    /** `<bucket>/<uuid>` → Moray's etag of the value the local copy was last given. */
    private readonly mirrored = new Map<string, string>();
    /** The copy as the change feed keeps it (answers once it is complete and current). */
    readonly mirror: LocalMirror;
    private readonly lists: JsonLists;
    /** The sync under way, and one asked for meanwhile (it begins once that one ends). */
    private syncing: Promise<SyncResult> | null = null;
    private queued: Promise<SyncResult> | null = null;

    constructor(
        private readonly primary: Store,
        private readonly local: SqliteStore,
        private readonly log: Logger,
        opts: CachedStoreOptions = {},
    ) {
        super();
        const pending = opts.pendingFields ?? (() => new Set<string>());
        const unindexed = (bucket: BucketName, filter: Filter): boolean => {
            const waiting = pending(bucket);
            return [...fieldsOf(filter)].some((f) => waiting.has(f));
        };
        this.mirror = new LocalMirror({
            local,
            log,
            resync: () => {
                // A copy under way that began too early is followed by another (the mirror asks again).
                if (this.syncing === null) {
                    this.sync().catch((err: unknown) => log.warn({ err }, 'local cache copy failed'));
                }
            },
            remoteCount: (bucket, filter) => (unindexed(bucket, filter) ? null : this.primary.count(bucket, filter)),
            unindexed: (bucket, filter) => unindexed(bucket, filter),
        });
        this.lists = {
            findJson: (bucket, filter, page, omit) => this.findJson(bucket, filter, page, omit),
            streamJson: (bucket, filter, chunkSize, omit) => this.streamJson(bucket, filter, chunkSize, omit),
        };
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
     * Moray's, with JSON lists of this store's own (from the copy when it
     * may answer, else from Moray, else from the copy while Moray is
     * unreachable), the copy as the change feed's mirror, and its reads.
     */
    override capabilities(): StoreCapabilities {
        const { jsonLists: _none, ...rest } = this.primary.capabilities();
        return { ...rest, jsonLists: this.lists, changeMirror: this.mirror, recentReads: this.mirror };
    }

    /** Moray's answer; the local copy's while Moray is unreachable. */
    private async orLocal<R>(what: Record<string, unknown>, primary: () => Promise<R>, local: () => Promise<R>): Promise<R> {
        try {
            return await primary();
        } catch (err) {
            if (err instanceof StoreUnavailableError && (await this.isFilled())) {
                this.log.warn(what, 'moray unavailable: answering from the local cache');
                this.mirror.settle();
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
                // A copy the feed keeps current may already hold a newer value than this read.
                if (!this.mirror.keptCurrent()) {
                    this.writeThrough(bucket, uuid, got);
                }
                return got;
            },
            () => this.local.get<T>(bucket, uuid),
        );
    }

    override async put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        const out = await this.primary.put(bucket, value, opts);
        this.writeThrough(bucket, String(value.uuid), out);
        return out;
    }

    override async del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        await this.primary.del(bucket, uuid, opts);
        this.writeThrough(bucket, uuid, null);
    }

    override async batch(ops: BatchOp[]): Promise<void> {
        await this.primary.batch(ops);
        for (const op of ops) {
            if (op.op === 'put') {
                this.writeThrough(op.bucket, String(op.value.uuid), { value: op.value, etag: '' });
            } else {
                this.writeThrough(op.bucket, op.uuid, null);
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
            this.mirror.settle();
            yield* this.local.iterate<T>(bucket, filter, chunkSize);
        }
    }

    override async count(bucket: BucketName, filter: Filter): Promise<number> {
        if (await this.mirror.answers(bucket, filter)) {
            return this.local.count(bucket, filter);
        }
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

    /** JSON lists: from the copy when it may answer, else from Moray (the copy while Moray is unreachable). */
    private async findJson(bucket: BucketName, filter: Filter, page: PageRequest | undefined, omit: readonly string[]): Promise<JsonPage> {
        if (await this.mirror.answers(bucket, filter)) {
            return this.local.findJson(bucket, filter, page, omit);
        }
        const got = await this.find(bucket, filter, page);
        return { json: got.items.map((s) => jsonWithout(s.value, omit)), total: got.total };
    }

    private async streamJson(bucket: BucketName, filter: Filter, chunkSize: number, omit: readonly string[]): Promise<JsonStream> {
        if (await this.mirror.answers(bucket, filter)) {
            return this.local.streamJson(bucket, filter, chunkSize, omit);
        }
        const total = await this.count(bucket, filter);
        const chunks = async function* (self: CachedStore): AsyncIterable<string[]> {
            for await (const chunk of self.iterate(bucket, filter, chunkSize)) {
                yield chunk.map((s) => jsonWithout(s.value, omit));
            }
        };
        return { total, chunks: chunks(this) };
    }

    override async close(): Promise<void> {
        this.mirror.settle();
        await this.primary.close();
        await this.local.close();
    }

    /**
     * Copy every object from Moray into the local cache, writing only the
     * rows that differ; drop what Moray no longer has. `copied`: objects
     * read from Moray; `written`: rows of the copy inserted or updated.
     */
    sync(opts: SyncOptions = {}): Promise<SyncResult> {
        if (this.syncing === null) {
            const run = this.syncOnce(opts).finally(() => {
                this.syncing = null;
            });
            this.syncing = run;
            return run;
        }
        // One under way: the copy asked for now begins after it (it may have read too early).
        this.queued ??= this.syncing
            .catch(() => undefined)
            .then(() => {
                this.queued = null;
                return this.sync();
            });
        return this.queued;
    }

    private async syncOnce(opts: SyncOptions): Promise<SyncResult> {
        await this.mirror.chainBegun(opts.awaitFeedMs ?? 0);
        let copied = 0;
        let written = 0;
        let dropped = 0;
        const copy = this.mirror.beginCopy();
        let ok = false;
        try {
            for (const def of ALL_BUCKETS) {
                const seen = await copyChunks(this.primary, def.name, 1000, (values) => {
                    // A row written meanwhile by the feed or this process is newer than what was read.
                    written += this.local.putIfChanged(
                        def.name,
                        values.filter((v) => !copy.skip(def.name, String(v.uuid))),
                    );
                });
                copied += seen.size;
                for await (const chunk of this.local.iterate(def.name, ALL, 1000)) {
                    for (const s of chunk) {
                        const uuid = String(s.value.uuid);
                        if (!seen.has(uuid) && !copy.skip(def.name, uuid)) {
                            await this.local.del(def.name, uuid).catch(() => undefined);
                            dropped++;
                        }
                    }
                }
            }
            ok = true;
        } finally {
            this.mirror.endCopy(copy.chain, ok);
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
    private writeThrough(bucket: BucketName, uuid: string, got: Stored | null): void {
        const key = `${bucket}/${uuid}`;
        if (got && got.etag !== '' && this.mirrored.get(key) === got.etag) {
            return;
        }
        this.mirrored.delete(key);
        this.mirror.wrote(bucket, uuid, got ? got.value : null);
        if (got && got.etag !== '') {
            if (this.mirrored.size >= MAX_MIRRORED) {
                this.mirrored.clear();
            }
            this.mirrored.set(key, got.etag);
        }
    }
}
