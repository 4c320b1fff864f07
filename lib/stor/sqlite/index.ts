// The embedded store: better-sqlite3, WAL, one transaction per logical write.

import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';

import { ALL_BUCKETS, bucketDef, indexFieldValue, type BucketDef, type BucketName } from '../buckets.js';
import { EtagConflictError, NotFoundError, StoreUnavailableError } from '../errors.js';
import type { BatchOp, DelOptions, Filter, JsonLists, JsonObject, JsonPage, Page, PageRequest, PutOptions, Store, Stored } from '../store.js';
import { fsReason, lockStore, StoreOpenError, type StoreLock } from './lock.js';
import { whereClause } from './query.js';
import { createStatements, ident, indexColumns, missingColumns } from './schema.js';

export interface SqliteStoreOptions {
    /** A file path, or ':memory:'. */
    path: string;
}

interface Row {
    uuid: string;
    etag: string;
    value: string;
}

export function etagOf(json: string): string {
    return createHash('sha1').update(json).digest('hex').slice(0, 20);
}

export class SqliteStore implements Store, JsonLists {
    readonly name = 'SqliteStorage';
    readonly path: string;
    private db: Database.Database | null = null;
    /** This process's hold on the store file (lock.ts); none for ':memory:'. */
    private lock: StoreLock | null = null;

    constructor(opts: SqliteStoreOptions) {
        this.path = opts.path;
    }

    // ---- lifecycle

    init(): Promise<void> {
        if (this.db) {
            return Promise.resolve();
        }
        try {
            if (this.path !== ':memory:') {
                try {
                    mkdirSync(dirname(this.path), { recursive: true });
                } catch (err) {
                    throw new StoreOpenError(`cannot create the store directory ${dirname(this.path)}: ${fsReason(err)}`, this.path);
                }
                // Before SQLite touches the file: another process may be serving it.
                this.lock = lockStore(this.path);
            }
            this.db = this.open();
        } catch (err) {
            this.lock?.release();
            this.lock = null;
            return Promise.reject(asError(err));
        }
        return Promise.resolve();
    }

    private open(): Database.Database {
        const db = new Database(this.path);
        db.pragma('journal_mode = WAL');
        // NORMAL in WAL mode survives a process crash (SIGKILL) without
        // losing a committed transaction; only a power loss can.
        db.pragma('synchronous = NORMAL');
        db.pragma('busy_timeout = 5000');
        db.exec('CREATE TABLE IF NOT EXISTS sapi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
        db.transaction(() => {
            for (const def of ALL_BUCKETS) {
                this.upgradeBucket(db, def);
            }
        })();
        return db;
    }

    /** Create the table, or add index columns of a newer bucket version and backfill them. */
    private upgradeBucket(db: Database.Database, def: BucketDef): void {
        const table = ident(def.name);
        const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(def.name);
        if (exists) {
            const cols = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
            const missing = missingColumns(def, cols);
            for (const c of missing) {
                db.exec(`ALTER TABLE ${table} ADD COLUMN ${ident(c)} TEXT`);
            }
            if (missing.length > 0) {
                const rows = db.prepare(`SELECT uuid, value FROM ${table}`).all() as Row[];
                const set = db.prepare(`UPDATE ${table} SET ${missing.map((c) => `${ident(c)} = ?`).join(', ')} WHERE uuid = ?`);
                for (const r of rows) {
                    const v = JSON.parse(r.value) as JsonObject;
                    set.run(...missing.map((c) => indexFieldValue(def, v, c)), r.uuid);
                }
            }
        }
        for (const stmt of createStatements(def)) {
            db.exec(stmt);
        }
    }

    close(): Promise<void> {
        if (this.db) {
            this.stmts.clear();
            this.db.close();
            this.db = null;
        }
        this.lock?.release();
        this.lock = null;
        return Promise.resolve();
    }

    ping(): Promise<boolean> {
        try {
            this.conn().prepare('SELECT 1').get();
            return Promise.resolve(true);
        } catch {
            return Promise.resolve(false);
        }
    }

    private conn(): Database.Database {
        if (!this.db) {
            throw new StoreUnavailableError('sqlite store is not open');
        }
        return this.db;
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
        try {
            let out: Stored<T> | undefined;
            this.conn().transaction(() => {
                out = this.putSync(bucket, value, opts.etag);
            })();
            return Promise.resolve(out as Stored<T>);
        } catch (err) {
            return Promise.reject(asError(err));
        }
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
        try {
            this.conn().transaction(() => this.delSync(bucket, uuid, opts.etag))();
            return Promise.resolve();
        } catch (err) {
            return Promise.reject(asError(err));
        }
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

    batch(ops: BatchOp[]): Promise<void> {
        try {
            this.conn().transaction(() => {
                for (const op of ops) {
                    if (op.op === 'put') {
                        this.putSync(op.bucket, op.value, op.etag);
                    } else {
                        this.delSync(op.bucket, op.uuid, op.etag);
                    }
                }
            })();
            return Promise.resolve();
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    /**
     * Run `fn` inside one SQLite transaction (synchronous model code only).
     * Used for read-modify-write sequences that must be atomic.
     */
    transaction<R>(fn: () => R): R {
        return this.conn().transaction(fn)();
    }

    /**
     * Synchronous unconditional write of each of `values` (the local
     * cache's write-through and refresh), in one transaction, except that a
     * row already holding exactly that value is left alone: no write at
     * all. Returns how many rows were written.
     */
    putIfChanged(bucket: BucketName, values: readonly JsonObject[]): number {
        return this.conn().transaction(() => {
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
    }

    /** Synchronous delete that ignores an absent object. */
    delUnchecked(bucket: BucketName, uuid: string): void {
        this.stmt(`DELETE FROM ${ident(bucket)} WHERE uuid = ?`).run(uuid);
    }

    // ---- queries

    find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        try {
            const total = this.countSync(bucket, filter);
            const rows = this.selectRows(bucket, filter, page, 'value', []);
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
        try {
            this.stmt('INSERT INTO sapi_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
            return Promise.resolve();
        } catch (err) {
            return Promise.reject(asError(err));
        }
    }

    // ---- statement cache

    private stmts = new Map<string, Database.Statement>();

    private stmt(sql: string): Database.Statement {
        let s = this.stmts.get(sql);
        if (!s) {
            s = this.conn().prepare(sql);
            this.stmts.set(sql, s);
        }
        return s;
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

function asError(err: unknown): Error {
    return err instanceof Error ? err : new Error(String(err));
}
