// The Moray backend: one Moray bucket per SAPI bucket (2.1.2's names), keys
// are uuids, values the objects as given. Behaves as the SQLite backend does:
// creation order is Moray's `_id`, pages are in uuid order after a marker,
// `total` counts every match.
//
// While a bucket update is being reindexed, a filter on a field the update
// added cannot be answered by Moray (rows written before the update are not
// in that index yet); such filters are answered by a scan of the rest of the
// filter, checked here, until the initializer says the reindex is complete.
//
// Rows SAPI 2.1.2 wrote lack the top-level index copies: the initializer's
// data migration 1 (migrations.ts) gives them their copies once; rows it
// keeps writing (during an update, or after a rollback) are given theirs by
// the initializer's sweeps and the change feed's repairer (rowObserver(),
// repair.ts).
//
// Writes made at the same time share one Moray batch (write-group.ts); each
// is acknowledged once Moray holds it, and one failing never fails another.

import type { LeaseBackend, LeaseRecord, StoredLease } from '../lease-backend.js';
import { ALL_BUCKETS, bucketDef, LEASES_BUCKET, TOMBSTONES_BUCKET, type BucketDef, type BucketName } from '../buckets.js';
import { StoreUnavailableError } from '../errors.js';
import type { BatchOp, DelOptions, Filter, JsonObject, Page, PageRequest, PutOptions, Store, StoreCapabilities, Stored } from '../store.js';
import { BucketsInitializer, type InitLogger, type MorayBucketDef } from './buckets-init.js';
import { createMorayClient, type MorayBatchRequest, type MorayClient, type MorayConnectOptions, type MorayObject } from './client.js';
import { FEED_BUCKETS, type ChangedRow, type ChangeSource, type RowObserver } from './feed.js';
import { afterId, afterMarker, filterFields, matchesNothing, matchesValue, toLdapString, withoutFields } from './filter.js';
import type { Migration } from './migrations.js';
import { IndexRepairer } from './repair.js';
import { WriteGroups, type GroupWrite, type WriteGroupOptions } from './write-group.js';

/** Service-level settings: key = setting name, value `{value}`. */
export const META_BUCKET: MorayBucketDef = { name: 'sapi_meta', version: 1, index: {} };

export interface MorayStoreOptions {
    /** An existing client (not closed by close()); or `connect` to make one. */
    client?: MorayClient | undefined;
    connect?: MorayConnectOptions | undefined;
    log?: InitLogger | undefined;
    buckets?: readonly BucketDef[] | undefined;
    /** init() rejects with StoreUnavailableError after this long; setup goes on. */
    initTimeoutMs?: number | undefined;
    /** Records per findObjects call when reading everything (default 1000). */
    pageSize?: number | undefined;
    reindexBatchSize?: number | undefined;
    backfillBatchSize?: number | undefined;
    /** Rows per sweep page, and between sweeps after start-up (buckets-init.ts). */
    sweepPageSize?: number | undefined;
    sweepEveryMs?: number | undefined;
    /** The data migrations wait for this first (see BucketsInitOptions). */
    migrationsAfter?: (() => Promise<void>) | undefined;
    /** The data migrations (default MIGRATIONS, migrations.ts). */
    migrations?: readonly Migration[] | undefined;
    retryMinDelayMs?: number | undefined;
    retryMaxDelayMs?: number | undefined;
    /** How concurrent writes share Moray batches (write-group.ts); false: each alone. */
    writeGroups?: WriteGroupOptions | false | undefined;
}

function toStored<T extends JsonObject>(r: MorayObject): Stored<T> {
    return { value: r.value as T, etag: r._etag };
}

function byUuid(a: Stored, b: Stored): number {
    const x = a.value.uuid as string;
    const y = b.value.uuid as string;
    return x < y ? -1 : x > y ? 1 : 0;
}

/** Buckets whose deletes leave a tombstone (GetConfig's change feed reads them). */
const TOMBSTONED: ReadonlySet<string> = new Set<string>(FEED_BUCKETS);

/** The put that records the delete of `uuid` of `bucket`, in the delete's batch. */
function tombstone(bucket: BucketName, uuid: string): MorayBatchRequest {
    return {
        operation: 'put',
        bucket: TOMBSTONES_BUCKET.name,
        key: `${bucket}/${uuid}`,
        // The time makes each tombstone's etag new, so a prune never removes a newer one.
        value: { bucket, uuid, deleted_at: new Date().toISOString() },
    };
}

function keyOf(value: JsonObject): string {
    const uuid = value.uuid;
    if (typeof uuid !== 'string') {
        throw new TypeError('stored objects need a string uuid');
    }
    return uuid;
}

export class MorayStore implements Store {
    readonly name = 'MorayStorage';

    /** Change stamps for the change feed, and the repair of rows older SAPIs write. */
    capabilities(): StoreCapabilities {
        return { changeSource: this.changeSource(), rowObserver: this.rowObserver() };
    }
    private clientRef: MorayClient | null;
    private readonly ownsClient: boolean;
    private initializerRef: BucketsInitializer | null = null;
    private closed = false;
    private readonly defs: readonly BucketDef[];
    private readonly pageSize: number;
    private readonly groups: WriteGroups | null;

    constructor(private readonly opts: MorayStoreOptions) {
        if (!opts.client && !opts.connect) {
            throw new TypeError('MorayStore needs a client or connect options');
        }
        this.clientRef = opts.client ?? null;
        this.ownsClient = !opts.client;
        this.defs = opts.buckets ?? ALL_BUCKETS;
        this.pageSize = opts.pageSize ?? 1000;
        this.groups = opts.writeGroups === false ? null : new WriteGroups(() => this.client, opts.writeGroups);
    }

    /** Moray batch RPCs so far that carried several writes (concurrent writes sharing a transaction). */
    get sharedBatches(): number {
        return this.groups?.shared ?? 0;
    }

    /** Writes waiting to be sent with the next group (write-group.ts). */
    get writesWaiting(): number {
        return this.groups?.waiting ?? 0;
    }

    /** A write, in a group with the writes made at the same time (or alone). */
    private async write(w: GroupWrite): Promise<string | undefined> {
        return this.groups ? this.groups.write(w) : w.alone(this.client);
    }

    // ---- lifecycle

    /** The bucket initializer (setup and reindex state); null before init(). */
    get initializer(): BucketsInitializer | null {
        return this.initializerRef;
    }

    private get client(): MorayClient {
        if (this.closed) {
            throw new StoreUnavailableError('moray store is closed');
        }
        if (!this.clientRef) {
            throw new StoreUnavailableError('moray store is not initialised');
        }
        return this.clientRef;
    }

    async init(): Promise<void> {
        if (this.closed) {
            throw new StoreUnavailableError('moray store is closed');
        }
        if (!this.initializerRef) {
            this.initializerRef = new BucketsInitializer({
                client: this.ensureClient(),
                buckets: [...this.defs, META_BUCKET, LEASES_BUCKET, TOMBSTONES_BUCKET],
                log: this.opts.log,
                metaBucket: META_BUCKET.name,
                reindexBatchSize: this.opts.reindexBatchSize,
                backfillBatchSize: this.opts.backfillBatchSize,
                sweepPageSize: this.opts.sweepPageSize,
                sweepEveryMs: this.opts.sweepEveryMs,
                migrationsAfter: this.opts.migrationsAfter,
                migrations: this.opts.migrations,
                retryMinDelayMs: this.opts.retryMinDelayMs,
                retryMaxDelayMs: this.opts.retryMaxDelayMs,
            });
            this.initializerRef.start();
        }
        const done = this.initializerRef.setupDone();
        const limit = this.opts.initTimeoutMs;
        if (limit === undefined) {
            return done;
        }
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new StoreUnavailableError(`moray buckets not set up after ${limit} ms`)), limit);
        });
        try {
            await Promise.race([done, timeout]);
        } finally {
            clearTimeout(timer);
        }
    }

    private ensureClient(): MorayClient {
        if (this.closed) {
            throw new StoreUnavailableError('moray store is closed');
        }
        if (!this.clientRef) {
            this.clientRef = createMorayClient(this.opts.connect as MorayConnectOptions);
        }
        return this.clientRef;
    }

    /**
     * The mode this Moray says SAPI is in, read without setting anything
     * up: the `mode` setting SAPI-TS keeps in `sapi_meta`; for a Moray
     * that holds SAPI's objects but no such setting (written by SAPI
     * 2.1.2, which only ever used Moray in full mode), "full"; null for a
     * Moray that has never held SAPI's data. Throws StoreUnavailableError
     * when Moray does not answer within `timeoutMs`.
     */
    async storedMode(timeoutMs: number): Promise<'proto' | 'full' | null> {
        const client = this.ensureClient();
        await client.waitConnected(timeoutMs);
        if (await client.getBucket(META_BUCKET.name)) {
            const r = await client.getObject(META_BUCKET.name, 'mode');
            const v = r?.value.value;
            if (v === 'proto' || v === 'full') {
                return v;
            }
        }
        // No mode recorded (SAPI 2.1.2 kept none; a start that set the
        // buckets up may have stopped before recording it): SAPI's data in
        // Moray means full mode. (A proto → full migration records proto
        // before it copies anything, so a half-done one is not taken for it.)
        for (const def of this.defs) {
            if ((await client.getBucket(def.name)) && (await client.findAll(def.name, '(uuid=*)', { limit: 1 })).length > 0) {
                return 'full';
            }
        }
        return null;
    }

    async ping(): Promise<boolean> {
        if (this.closed || !this.clientRef || !this.initializerRef?.isSetUp()) {
            return false;
        }
        try {
            await this.clientRef.ping();
            return true;
        } catch {
            return false;
        }
    }

    async close(): Promise<void> {
        this.closed = true;
        this.initializerRef?.stop();
        if (this.ownsClient && this.clientRef) {
            const c = this.clientRef;
            this.clientRef = null;
            await c.close();
        }
    }

    // ---- objects

    async get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        bucketDef(bucket);
        const r = await this.client.getObject(bucket, uuid);
        return r ? toStored<T>(r) : null;
    }

    async put<T extends JsonObject>(bucket: BucketName, value: T, opts: PutOptions = {}): Promise<Stored<T>> {
        bucketDef(bucket);
        const key = keyOf(value);
        const json = JSON.stringify(value);
        const sent = JSON.parse(json) as JsonObject;
        const etag = await this.write({
            requests: [{ operation: 'put', bucket, key, value: sent, options: { etag: opts.etag } }],
            put: { bucket, key },
            alone: async (client) => (await client.putObject(bucket, key, sent, { etag: opts.etag })).etag,
        });
        return { value: JSON.parse(json) as T, etag: etag as string };
    }

    /** Deletes; of a config bucket, with its tombstone in the same batch. */
    async del(bucket: BucketName, uuid: string, opts: DelOptions = {}): Promise<void> {
        bucketDef(bucket);
        const del: MorayBatchRequest = { operation: 'delete', bucket, key: uuid, options: { etag: opts.etag } };
        if (!TOMBSTONED.has(bucket)) {
            await this.write({
                requests: [del],
                alone: (client) => client.delObject(bucket, uuid, { etag: opts.etag }).then(() => undefined),
            });
            return;
        }
        const reqs = [del, tombstone(bucket, uuid)];
        await this.write({
            requests: reqs,
            alone: (client) => client.batch(reqs, { bucket, key: uuid, expected: opts.etag }).then(() => undefined),
        });
    }

    async batch(ops: BatchOp[]): Promise<void> {
        const reqs: MorayBatchRequest[] = ops.map((op) => {
            bucketDef(op.bucket);
            if (op.op === 'put') {
                return {
                    operation: 'put',
                    bucket: op.bucket,
                    key: keyOf(op.value),
                    value: JSON.parse(JSON.stringify(op.value)) as JsonObject,
                    options: { etag: op.etag },
                };
            }
            return { operation: 'delete', bucket: op.bucket, key: op.uuid, options: { etag: op.etag } };
        });
        for (const op of ops) {
            if (op.op === 'del' && TOMBSTONED.has(op.bucket)) {
                reqs.push(tombstone(op.bucket, op.uuid));
            }
        }
        if (reqs.length === 0) {
            return;
        }
        await this.write({ requests: reqs, alone: (client) => client.batch(reqs).then(() => undefined) });
    }

    // ---- queries

    /** Fields of `filter` that Moray cannot be trusted with yet. */
    private pendingIn(bucket: BucketName, filter: Filter): Set<string> {
        const pending = this.initializerRef?.pendingFields(bucket) ?? new Set<string>();
        return new Set([...filterFields(filter)].filter((f) => pending.has(f)));
    }

    async find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        const def = bucketDef(bucket);
        const ldap = toLdapString(filter, def);
        if (matchesNothing(filter)) {
            return { items: [], total: 0 };
        }
        if (!page || this.pendingIn(bucket, filter).size > 0) {
            const items: Stored<T>[] = [];
            for await (const chunk of this.iterate<T>(bucket, filter, this.pageSize)) {
                items.push(...chunk);
            }
            if (!page) {
                return { items, total: items.length };
            }
            // A scan (a reindex is in progress): page it here.
            const marker = page.marker;
            const after = items.sort(byUuid).filter((s) => marker === undefined || (s.value.uuid as string) > marker);
            return { items: after.slice(0, Math.max(0, page.limit)), total: items.length };
        }
        if (page.limit <= 0) {
            return { items: [], total: await this.count(bucket, filter) };
        }
        const query = page.marker === undefined ? ldap : afterMarker(filter, page.marker, def);
        const recs = await this.client.findAll(bucket, query, {
            limit: page.limit,
            sort: { attribute: 'uuid', order: 'ASC' },
        });
        const first = recs[0];
        const total =
            page.marker === undefined && first?._count !== undefined
                ? Number(first._count)
                : page.marker === undefined && recs.length === 0
                  ? 0
                  : await this.count(bucket, filter);
        return { items: recs.map((r) => toStored<T>(r)), total };
    }

    async *iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize = 500): AsyncIterable<Stored<T>[]> {
        const def = bucketDef(bucket);
        toLdapString(filter, def);
        if (matchesNothing(filter)) {
            return;
        }
        const pending = this.pendingIn(bucket, filter);
        const server = pending.size > 0 ? withoutFields(filter, pending) : filter;
        const size = Math.max(1, Math.floor(chunkSize));
        let last = 0;
        for (;;) {
            const recs = await this.client.findAll(bucket, afterId(server, last, def), {
                limit: size,
                sort: { attribute: '_id', order: 'ASC' },
            });
            if (recs.length === 0) {
                return;
            }
            last = Number(recs[recs.length - 1]?._id);
            const items = recs.filter((r) => pending.size === 0 || matchesValue(filter, r.value, def)).map((r) => toStored<T>(r));
            if (items.length > 0) {
                yield items;
            }
            if (recs.length < size) {
                return;
            }
        }
    }

    async count(bucket: BucketName, filter: Filter): Promise<number> {
        const def = bucketDef(bucket);
        const ldap = toLdapString(filter, def);
        if (matchesNothing(filter)) {
            return 0;
        }
        if (this.pendingIn(bucket, filter).size === 0) {
            const recs = await this.client.findAll(bucket, ldap, { limit: 1 });
            const first = recs[0];
            if (!first) {
                return 0;
            }
            if (first._count !== undefined) {
                return Number(first._count);
            }
        }
        let n = 0;
        for await (const chunk of this.iterate(bucket, filter, this.pageSize)) {
            n += chunk.length;
        }
        return n;
    }

    // ---- meta

    async getMeta(key: string): Promise<string | null> {
        const r = await this.client.getObject(META_BUCKET.name, key);
        const v = r?.value.value;
        return typeof v === 'string' ? v : null;
    }

    async setMeta(key: string, value: string): Promise<void> {
        await this.client.putObject(META_BUCKET.name, key, { value });
    }

    // ---- change feed

    private feedSource: ChangeSource | null = null;

    /** What GetConfig's change feed asks this Moray (lib/stor/moray/feed.ts); the same object every time. */
    changeSource(): ChangeSource {
        this.feedSource ??= {
            changedSince: async (bucket: string, mtime: number, limit: number): Promise<ChangedRow[]> => {
                const recs = await this.client.findAll(bucket, `(_mtime>=${Math.floor(mtime)})`, {
                    limit,
                    sort: { attribute: '_mtime', order: 'ASC' },
                });
                return recs.map((r) => ({ key: r.key, value: r.value, mtime: Number(r._mtime ?? 0), etag: r._etag }));
            },
            stamp: async (key: string): Promise<number> => {
                const bucket = TOMBSTONES_BUCKET.name;
                await this.client.putObject(bucket, key, { stamped_at: new Date().toISOString() });
                const got = await this.client.getObject(bucket, key);
                if (typeof got?._mtime !== 'number' && typeof got?._mtime !== 'string') {
                    throw new StoreUnavailableError(`moray ${bucket}/${key}: no _mtime`);
                }
                return Number(got._mtime);
            },
            pruneTombstones: async (mtime: number, limit: number): Promise<number> => {
                const bucket = TOMBSTONES_BUCKET.name;
                const old = await this.client.findAll(bucket, `(_mtime<=${Math.floor(mtime)})`, { limit, sort: { attribute: '_mtime', order: 'ASC' } });
                if (old.length === 0) {
                    return 0;
                }
                // Conditional on each etag: a tombstone written again meanwhile stays (another SAPI pruning too fails the batch).
                await this.client.batch(old.map((r) => ({ operation: 'delete', bucket, key: r.key, options: { etag: r._etag } })));
                return old.length;
            },
        };
        return this.feedSource;
    }

    private repairer: IndexRepairer | null = null;

    /**
     * What GetConfig's change feed shows the rows it reads (feed.ts): the
     * repairer that gives rows written without their index copies (by SAPI
     * 2.1.2) their copies, once the bucket's backfill is done. The same
     * object every time.
     */
    rowObserver(): RowObserver & { idle(): Promise<void> } {
        this.repairer ??= new IndexRepairer({
            client: () => this.client,
            defs: this.defs,
            backfilled: (bucket) => this.initializerRef?.isBackfilled(bucket) ?? false,
            log: this.opts.log,
        });
        return this.repairer;
    }

    // ---- leases

    /** The leases kept in this Moray (conditional writes on Moray's etag). */
    leaseBackend(): LeaseBackend {
        const bucket = LEASES_BUCKET.name;
        return {
            get: async (key: string): Promise<StoredLease | null> => {
                const r = await this.client.getObject(bucket, key);
                return r ? { record: r.value as unknown as LeaseRecord, etag: r._etag } : null;
            },
            put: async (record: LeaseRecord, etag: string | null): Promise<string> => {
                return (await this.client.putObject(bucket, record.key, { ...record }, { etag })).etag;
            },
            del: (key: string, etag: string): Promise<void> => this.client.delObject(bucket, key, { etag }),
        };
    }
}
