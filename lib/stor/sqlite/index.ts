// The embedded store: better-sqlite3 in WAL mode, with durable, grouped
// commits. This file is the Store itself: objects read and written by
// uuid and etag, lists and counts by filter (also as JSON text straight
// from SQLite: the JSON list fast path), the meta table, and the
// synchronous writes of the local copy of Moray. Opening and closing the
// file is connection.ts's; when a write commits and is synced, and the
// checkpoints, are group-commit.ts's.

import { createHash } from 'node:crypto';

import { bucketDef, indexFieldValue, type BucketName } from '../buckets.js';
import { EtagConflictError, NotFoundError } from '../errors.js';
import type {
    BatchOp,
    DelOptions,
    Filter,
    JsonLists,
    JsonObject,
    JsonPage,
    JsonStream,
    Page,
    PageRequest,
    PutOptions,
    Store,
    StoreCapabilities,
    Stored,
} from '../store.js';
import { asError, type Row } from './connection.js';
import { GroupCommitStore, type SqliteStoreOptions } from './group-commit.js';
import { whereClause } from './query.js';
import { ident, indexColumns } from './schema.js';

export type { SqliteStoreOptions };

export function etagOf(json: string): string {
    return createHash('sha1').update(json).digest('hex').slice(0, 20);
}

export class SqliteStore extends GroupCommitStore implements Store, JsonLists {
    readonly name = 'SqliteStorage';

    /** Lists as JSON text straight from SQLite. */
    capabilities(): StoreCapabilities {
        return { jsonLists: this };
    }

    // ---- objects

    get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        try {
            return Promise.resolve(this.getSync<T>(bucket, uuid));
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    getSync<T extends JsonObject>(bucket: BucketName, uuid: string): Stored<T> | null {
        const row = this.stmt(`SELECT uuid, etag, value FROM ${ident(bucket)} WHERE uuid = ?`).get(uuid) as Row | undefined;
        return row ? toStored<T>(row) : null;
    }

    put<T extends JsonObject>(bucket: BucketName, value: T, opts: PutOptions = {}): Promise<Stored<T>> {
        // The value as it is now: the caller may change its object before the group commits.
        const json = JSON.stringify(value);
        return this.enqueue(() => this.putSync<T>(bucket, value, opts.etag, json), true);
    }

    /** `json`: the value's JSON text, when the caller has it already. */
    private putSync<T extends JsonObject>(bucket: BucketName, value: T, expect: string | null | undefined, json = JSON.stringify(value)): Stored<T> {
        const def = bucketDef(bucket);
        const uuid = uuidOf(value);
        const current = this.stmt(`SELECT etag FROM ${ident(bucket)} WHERE uuid = ?`).get(uuid) as { etag: string } | undefined;
        if (expect !== undefined && (current?.etag ?? null) !== expect) {
            throw new EtagConflictError(bucket, uuid, expect, current?.etag ?? null);
        }
        const etag = etagOf(json);
        const cols = indexColumns(def);
        const vals = cols.map((c) => indexFieldValue(def, value, c));
        if (current) {
            const set = ['etag = ?', 'value = ?', ...cols.map((c) => `${ident(c)} = ?`)].join(', ');
            this.stmt(`UPDATE ${ident(bucket)} SET ${set} WHERE uuid = ?`).run(etag, json, ...vals, uuid);
        } else {
            const names = ['uuid', 'etag', 'value', ...cols.map(ident)].join(', ');
            const marks = ['?', '?', '?', ...cols.map(() => '?')].join(', ');
            this.stmt(`INSERT INTO ${ident(bucket)} (${names}) VALUES (${marks})`).run(uuid, etag, json, ...vals);
        }
        return { value: JSON.parse(json) as T, etag };
    }

    del(bucket: BucketName, uuid: string, opts: DelOptions = {}): Promise<void> {
        return this.enqueue(() => this.delSync(bucket, uuid, opts.etag), true);
    }

    private delSync(bucket: BucketName, uuid: string, expect: string | undefined): void {
        const current = this.stmt(`SELECT etag FROM ${ident(bucket)} WHERE uuid = ?`).get(uuid) as { etag: string } | undefined;
        if (!current) {
            throw new NotFoundError(bucket, uuid);
        }
        if (expect !== undefined && current.etag !== expect) {
            throw new EtagConflictError(bucket, uuid, expect, current.etag);
        }
        this.stmt(`DELETE FROM ${ident(bucket)} WHERE uuid = ?`).run(uuid);
    }

    /** All of `ops` or none: one savepoint of the group holds them all. */
    batch(ops: BatchOp[]): Promise<void> {
        const frozen = ops.map((op) => (op.op === 'put' ? { op, json: JSON.stringify(op.value) } : { op, json: '' }));
        // One operation alone is a single write (see Pending): no savepoint.
        return this.enqueue(() => {
            for (const { op, json } of frozen) {
                if (op.op === 'put') {
                    this.putSync(op.bucket, op.value, op.etag, json);
                } else {
                    this.delSync(op.bucket, op.uuid, op.etag);
                }
            }
        }, frozen.length === 1);
    }

    /**
     * Run `fn` inside one SQLite transaction (synchronous model code only).
     * Used for read-modify-write sequences that must be atomic.
     */
    transaction<R>(fn: () => R): R {
        this.flush();
        const out = this.conn().transaction(fn)();
        this.syncNow();
        this.maybeCheckpoint(1);
        return out;
    }

    /**
     * Synchronous unconditional write of each of `values` (the local
     * cache's write-through and refresh), in one transaction, except that a
     * row already holding exactly that value is left alone: no write at
     * all. Returns how many rows were written.
     */
    putIfChanged(bucket: BucketName, values: readonly JsonObject[]): number {
        this.flush();
        // A copy of Moray's objects, refilled from Moray: committed, not synced one by one.
        const written = this.conn().transaction(() => {
            let written = 0;
            for (const value of values) {
                const json = JSON.stringify(value);
                const row = this.stmt(`SELECT value FROM ${ident(bucket)} WHERE uuid = ?`).get(uuidOf(value)) as { value: string } | undefined;
                if (row?.value !== json) {
                    this.putSync(bucket, value, undefined, json);
                    written++;
                }
            }
            return written;
        })();
        this.maybeCheckpoint(written);
        return written;
    }

    /**
     * putIfChanged() and delUnchecked() for several objects of any buckets
     * (`value` null: delete), in one transaction and in the order given.
     * Returns how many rows were written or deleted.
     */
    applyCopy(ops: readonly { bucket: BucketName; uuid: string; value: JsonObject | null }[]): number {
        this.flush();
        const written = this.conn().transaction(() => {
            let n = 0;
            for (const op of ops) {
                if (op.value === null) {
                    n += this.stmt(`DELETE FROM ${ident(op.bucket)} WHERE uuid = ?`).run(op.uuid).changes;
                    continue;
                }
                const json = JSON.stringify(op.value);
                const row = this.stmt(`SELECT value FROM ${ident(op.bucket)} WHERE uuid = ?`).get(op.uuid) as { value: string } | undefined;
                if (row?.value !== json) {
                    this.putSync(op.bucket, op.value, undefined, json);
                    n++;
                }
            }
            return n;
        })();
        this.maybeCheckpoint(written);
        return written;
    }

    /** Synchronous delete that ignores an absent object (the local copy of Moray, as putIfChanged). */
    delUnchecked(bucket: BucketName, uuid: string): void {
        this.flush();
        this.stmt(`DELETE FROM ${ident(bucket)} WHERE uuid = ?`).run(uuid);
        this.maybeCheckpoint(1);
    }

    // ---- queries

    find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        try {
            const rows = this.selectRows(bucket, filter, page, 'value', []);
            // Unpaged, every match is there: no count needed.
            const total = page ? this.countSync(bucket, filter) : rows.length;
            return Promise.resolve({ items: rows.map((r) => toStored<T>(r)), total });
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    /**
     * find(), but each match as its JSON text with the top-level keys
     * `omit` removed by SQLite (json_remove): lists go to the socket without
     * a parse and a re-serialization per object.
     */
    findJson(bucket: BucketName, filter: Filter, page: PageRequest | undefined, omit: readonly string[]): Promise<JsonPage> {
        try {
            const total = this.countSync(bucket, filter);
            const rows = this.selectRows(bucket, filter, page, jsonRemove(omit), omitPaths(omit));
            return Promise.resolve({ json: rows.map((r) => r.value), total });
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    private selectRows(bucket: BucketName, filter: Filter, page: PageRequest | undefined, valueSql: string, valueParams: string[]): Row[] {
        const where = whereClause(bucketDef(bucket), filter);
        const params: (string | number)[] = [...valueParams, ...where.params];
        let sql = `SELECT uuid, etag, ${valueSql} AS value FROM ${ident(bucket)} WHERE (${where.sql})`;
        if (!page) {
            return this.stmt(`${sql} ORDER BY seq`).all(...params) as Row[];
        }
        if (page.marker !== undefined) {
            sql += ' AND uuid > ?';
            params.push(page.marker);
        }
        params.push(page.limit);
        return this.stmt(`${sql} ORDER BY uuid LIMIT ?`).all(...params) as Row[];
    }

    async *iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize = 500): AsyncIterable<Stored<T>[]> {
        for (const rows of this.chunks(bucket, filter, chunkSize, 'value', [])) {
            yield rows.map((r) => toStored<T>(r));
        }
    }

    /** count() and iterateJson() (JsonLists.streamJson). */
    streamJson(bucket: BucketName, filter: Filter, chunkSize: number, omit: readonly string[]): Promise<JsonStream> {
        try {
            return Promise.resolve({ total: this.countSync(bucket, filter), chunks: this.iterateJson(bucket, filter, chunkSize, omit) });
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    /** iterate(), as JSON text with `omit` removed (see findJson). */
    async *iterateJson(bucket: BucketName, filter: Filter, chunkSize: number, omit: readonly string[]): AsyncIterable<string[]> {
        for (const rows of this.chunks(bucket, filter, chunkSize, jsonRemove(omit), omitPaths(omit))) {
            yield rows.map((r) => r.value);
        }
    }

    /** Creation-order chunks by `seq`, each its own statement (writers interleave safely). */
    private *chunks(bucket: BucketName, filter: Filter, chunkSize: number, valueSql: string, valueParams: string[]): Generator<Row[]> {
        const where = whereClause(bucketDef(bucket), filter);
        const sql = `SELECT seq, uuid, etag, ${valueSql} AS value FROM ${ident(bucket)} WHERE (${where.sql}) AND seq > ? ORDER BY seq LIMIT ?`;
        let last = 0;
        for (;;) {
            const rows = this.stmt(sql).all(...valueParams, ...where.params, last, chunkSize) as (Row & { seq: number })[];
            if (rows.length === 0) {
                return;
            }
            last = (rows[rows.length - 1] as { seq: number }).seq;
            yield rows;
            if (rows.length < chunkSize) {
                return;
            }
        }
    }

    count(bucket: BucketName, filter: Filter): Promise<number> {
        try {
            return Promise.resolve(this.countSync(bucket, filter));
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    private countSync(bucket: BucketName, filter: Filter): number {
        const where = whereClause(bucketDef(bucket), filter);
        const row = this.stmt(`SELECT count(*) AS n FROM ${ident(bucket)} WHERE ${where.sql}`).get(...where.params) as {
            n: number;
        };
        return row.n;
    }

    // ---- meta

    getMeta(key: string): Promise<string | null> {
        try {
            const row = this.stmt('SELECT value FROM sapi_meta WHERE key = ?').get(key) as { value: string } | undefined;
            return Promise.resolve(row?.value ?? null);
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    setMeta(key: string, value: string): Promise<void> {
        return this.enqueue(() => {
            this.stmt('INSERT INTO sapi_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
        });
    }
}

function uuidOf(value: JsonObject): string {
    const uuid = value.uuid;
    if (typeof uuid !== 'string') {
        throw new TypeError('stored objects need a string uuid');
    }
    return uuid;
}

function jsonRemove(omit: readonly string[]): string {
    return omit.length === 0 ? 'value' : `json_remove(value, ${omit.map(() => '?').join(', ')})`;
}

/** JSON paths of top-level keys (names we define, checked anyway). */
function omitPaths(omit: readonly string[]): string[] {
    return omit.map((k) => {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
            throw new Error(`bad key ${k}`);
        }
        return `$.${k}`;
    });
}

function toStored<T extends JsonObject>(row: Row): Stored<T> {
    return { value: JSON.parse(row.value) as T, etag: row.etag };
}
