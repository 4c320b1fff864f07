// The embedded store: better-sqlite3 in WAL mode, with durable, grouped commits.
//
// Durability: a write is acknowledged (its promise settles) only once the
// transaction holding it has committed and the write-ahead log has been
// synced to disk, so an acknowledged write survives a power loss, not only
// a crash of the process. That is what SQLite's `synchronous = FULL` gives
// in WAL mode; here the sync of the log runs off the event loop (an
// fdatasync in libuv's thread pool) instead of inside COMMIT, so requests
// go on being served while the disk syncs. Checkpoints (copying the log
// into the database file) are the store's, run by a worker thread with its
// own connection (checkpointer.ts), with SQLite's own syncs on: the log is
// synced before the database file is written and the database file is
// synced before the log is reused, exactly as in FULL mode. The main
// connection runs `synchronous = NORMAL`, which in WAL mode syncs nothing
// at commit (the store does that) but does sync the log's header when the
// log starts over, before new frames can overwrite copied ones.
//
// Group commit: a sync costs far more than the write it protects, so writes
// are not committed one by one. Every write asked for while the event loop
// goes round (all the requests read from the sockets in one pass) joins one
// group; the group runs as one transaction and is committed once, at the
// next turn of the loop. Groups committed while a sync runs share the next
// sync. A write that fails (an etag conflict, a missing object) fails
// alone and leaves nothing of itself: a batch runs in its own savepoint,
// rolled back if one of its operations fails; a single put or delete
// checks before it changes anything and then runs one statement, which
// SQLite undoes by itself if it fails. The others of its group commit. A commit or a sync that fails fails
// every write it covers, and none of them is acknowledged.
//
// A committed write is visible to readers from its commit, which can be a
// moment before its sync completes and it is acknowledged.

import { createHash } from 'node:crypto';
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';

import { ALL_BUCKETS, bucketDef, indexFieldValue, type BucketDef, type BucketName } from '../buckets.js';
import { EtagConflictError, NotFoundError, StoreUnavailableError } from '../errors.js';
import type {
    BatchOp,
    DelOptions,
    Filter,
    JsonLists,
    JsonObject,
    JsonPage,
    Page,
    PageRequest,
    PutOptions,
    Store,
    StoreCapabilities,
    Stored,
} from '../store.js';
import { Checkpointer } from './checkpointer.js';
import { errnoText } from '../../fs-errors.js';
import { lockStore, StoreOpenError, type StoreLock } from './lock.js';
import { whereClause } from './query.js';
import { createStatements, ident, indexColumns, missingColumns } from './schema.js';

export interface SqliteStoreOptions {
    /** A file path, or ':memory:'. */
    path: string;
    /** Acknowledged writes between checkpoint rounds (tests make it small). */
    checkpointWrites?: number;
    /** Log length (pages) past which a round makes the log start over (tests make it small). */
    logFrames?: number;
}

interface Row {
    uuid: string;
    etag: string;
    value: string;
}

/** A write waiting for its group's commit. */
interface Pending {
    work: () => unknown;
    /**
     * The work changes nothing before its checks pass and then runs one
     * statement, which SQLite undoes by itself if it fails: no savepoint
     * needed to fail it alone. A batch is not: it needs its savepoint.
     */
    single: boolean;
    resolve: (value: unknown) => void;
    reject: (err: Error) => void;
}

/** Pages SQLite keeps in memory (negative: KiB), beyond its 2 MiB default: indexes of a large DC stay cached. */
const CACHE_KIB = 32 * 1024;
/** Committed writes between checkpoint rounds: the log stays in the tens of MiB. */
const CHECKPOINT_WRITES = 1000;
/**
 * Log length, in pages, past which the log starts over: the round ends
 * with a checkpoint that holds back new commits for a moment (two syncs),
 * so it comes every few thousand writes, not every round.
 */
const LOG_FRAMES = 16 * 1024;
/** A checkpoint with commits held back comes once one beside them found fewer new frames than this. */
const HOLD_FRAMES = 1024;
/** A log that grew past this (a burst) is cut back to it when it starts over. */
const LOG_KEEP_BYTES = 128 * 1024 * 1024;

export function etagOf(json: string): string {
    return createHash('sha1').update(json).digest('hex').slice(0, 20);
}

export class SqliteStore implements Store, JsonLists {
    readonly name = 'SqliteStorage';

    /** Lists as JSON text straight from SQLite. */
    capabilities(): StoreCapabilities {
        return { jsonLists: this };
    }
    readonly path: string;
    private db: Database.Database | null = null;
    /** This process's hold on the store file (lock.ts); none for ':memory:'. */
    private lock: StoreLock | null = null;
    /** Writes of the group being formed, committed together at the next turn of the loop. */
    private pending: Pending[] = [];
    private flushScheduled = false;
    /** Runs a function in a savepoint (inside the group's transaction). */
    private savepoint: ((fn: () => unknown) => unknown) | null = null;
    /** Groups committed, writes in them and syncs of the log since the store opened (tests and metrics). */
    readonly commits = { groups: 0, writes: 0, syncs: 0 };
    /** The write-ahead log, opened to sync it; null for ':memory:'. */
    private walFd: number | null = null;
    /** Committed writes waiting for the next sync of the log, and whether one runs. */
    private unsynced: Pending[] = [];
    private syncing = false;
    /** Settled once no write waits for a sync (close() waits on it). */
    private drained: (() => void)[] = [];
    private sinceCheckpoint = 0;
    private readonly checkpointWrites: number;
    private readonly logFrames: number;
    /** The checkpoint worker, started at the first round; null until then and once closed. */
    private checkpointer: Checkpointer | null = null;
    /** The round under way, if any (close() waits for it). */
    private round: Promise<void> | null = null;
    /** New commits held back while a round's last checkpoint copies the end of the log. */
    private holding = false;
    /**
     * Checkpoint rounds done, checkpoints run, rounds that held commits back
     * (to start the log over), the longest log a checkpoint found (pages),
     * rounds failed, time commits were held back (tests and metrics).
     */
    readonly checkpoints = { rounds: 0, runs: 0, held: 0, maxLog: 0, failures: 0, heldMs: 0 };

    constructor(opts: SqliteStoreOptions) {
        this.path = opts.path;
        this.checkpointWrites = opts.checkpointWrites ?? CHECKPOINT_WRITES;
        this.logFrames = opts.logFrames ?? LOG_FRAMES;
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
                    throw new StoreOpenError(`cannot create the store directory ${dirname(this.path)}: ${errnoText(err)}`, this.path);
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
        const file = this.path !== ':memory:';
        // The store syncs the log itself after each group commit and
        // checkpoints in its worker, with syncs on (see the top of this file).
        db.pragma(file ? 'synchronous = NORMAL' : 'synchronous = FULL');
        db.pragma('wal_autocheckpoint = 0');
        db.pragma(`journal_size_limit = ${LOG_KEEP_BYTES}`);
        db.pragma('busy_timeout = 5000');
        db.pragma(`cache_size = -${CACHE_KIB}`);
        // Savepoints journal the pages they change: in memory, not in a temporary file.
        db.pragma('temp_store = MEMORY');
        this.savepoint = db.transaction((fn: () => unknown) => fn());
        db.exec('CREATE TABLE IF NOT EXISTS sapi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
        db.transaction(() => {
            for (const def of ALL_BUCKETS) {
                this.upgradeBucket(db, def);
            }
        })();
        if (file) {
            // The log exists from the first transaction on, for as long as the connection is open.
            this.walFd = openSync(`${this.path}-wal`, 'r');
            fdatasyncSync(this.walFd);
            syncDir(dirname(this.path));
        }
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

    async close(): Promise<void> {
        if (this.db) {
            // Writes already asked for are committed, synced and answered first.
            this.flush();
            if (this.syncing || this.unsynced.length > 0) {
                await new Promise<void>((resolve) => this.drained.push(resolve));
            }
            // The worker's connection closes before ours, so that ours, the
            // last, copies the whole log into the file and removes it.
            while (this.round) {
                await this.round;
            }
            const worker = this.checkpointer;
            this.checkpointer = null;
            await worker?.close().catch(() => undefined);
        }
        if (this.db) {
            const db = this.db;
            this.db = null;
            this.stmts.clear();
            this.savepoint = null;
            // Closing checkpoints the log into the file: with syncs, as every checkpoint.
            db.pragma('synchronous = FULL');
            db.close();
            if (this.walFd !== null) {
                closeSync(this.walFd);
                this.walFd = null;
            }
        }
        this.lock?.release();
        this.lock = null;
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

    // ---- group commit

    /** Queue a write for the group being formed; settles once the group has committed. */
    private enqueue<R>(work: () => R, single = false): Promise<R> {
        if (!this.db) {
            return Promise.reject(new StoreUnavailableError('sqlite store is not open'));
        }
        return new Promise<R>((resolve, reject) => {
            this.pending.push({ work, single, resolve: resolve as (value: unknown) => void, reject });
            if (!this.flushScheduled) {
                this.flushScheduled = true;
                // After the poll phase: every request read in this pass has queued its write.
                setImmediate(() => this.flush(false));
            }
        });
    }

    /**
     * Commit the group formed so far: one transaction (each batch in its
     * own savepoint), then answer each write. Also run, synchronously, before any
     * synchronous write, so writes commit in the order they were asked for.
     * `force`: commit even while a checkpoint round holds commits back
     * (a synchronous write cannot wait; the round then may not leave the
     * whole log copied, and the next one catches up).
     */
    flush(force = true): void {
        this.flushScheduled = false;
        const group = this.pending;
        if (group.length === 0 || (this.holding && !force)) {
            return;
        }
        this.pending = [];
        const outcomes: { ok: boolean; value: unknown }[] = [];
        try {
            const db = this.conn();
            if (group.length === 1) {
                // Alone in its group: its own transaction, which its failure rolls back.
                const w = group[0] as Pending;
                outcomes.push({ ok: true, value: db.transaction(w.work)() });
            } else {
                const savepoint = this.savepoint as (fn: () => unknown) => unknown;
                db.transaction(() => {
                    for (const w of group) {
                        try {
                            outcomes.push({ ok: true, value: w.single ? w.work() : savepoint(w.work) });
                        } catch (err) {
                            if (!db.inTransaction) {
                                // SQLite rolled the whole transaction back (I/O error, disk full): the group fails.
                                throw err;
                            }
                            outcomes.push({ ok: false, value: err });
                        }
                    }
                })();
            }
        } catch (err) {
            // The commit (or the transaction itself) failed: nothing of the group is stored.
            for (const w of group) {
                w.reject(asError(err));
            }
            return;
        }
        this.commits.groups++;
        this.commits.writes += group.length;
        group.forEach((w, i) => {
            const o = outcomes[i] as { ok: boolean; value: unknown };
            if (!o.ok) {
                w.reject(asError(o.value)); // it wrote nothing: no sync to wait for
            } else if (this.walFd === null) {
                w.resolve(o.value);
            } else {
                this.sinceCheckpoint++;
                this.unsynced.push({ ...w, work: () => o.value });
            }
        });
        this.sync();
    }

    /**
     * Sync the log for every write committed and not yet synced, off the
     * event loop; writes committed meanwhile wait for the next sync. Once a
     * sync completes, its writes are answered.
     */
    private sync(): void {
        if (this.syncing || this.walFd === null || this.unsynced.length === 0) {
            if (!this.syncing && this.unsynced.length === 0) {
                this.drain();
            }
            return;
        }
        this.syncing = true;
        const covered = this.unsynced;
        this.unsynced = [];
        fdatasync(this.walFd, (err) => {
            this.syncing = false;
            this.commits.syncs++;
            for (const w of covered) {
                if (err) {
                    w.reject(new StoreUnavailableError(`sqlite store: syncing the log failed: ${err.message}`));
                } else {
                    w.resolve(w.work());
                }
            }
            this.maybeCheckpoint(0);
            this.sync();
        });
    }

    private drain(): void {
        const waiting = this.drained;
        this.drained = [];
        for (const resolve of waiting) {
            resolve();
        }
    }

    /** Start a checkpoint round once enough writes have committed since the last (none for ':memory:'). */
    private maybeCheckpoint(written: number): void {
        this.sinceCheckpoint += written;
        if (this.sinceCheckpoint < this.checkpointWrites || this.round || !this.db || this.walFd === null) {
            return;
        }
        this.sinceCheckpoint = 0;
        this.round = this.checkpointRound().finally(() => {
            this.round = null;
        });
    }

    /**
     * Copy the log into the database file, in the worker, beside the
     * writes. Once the log is long, end with a checkpoint with new commits
     * held back, which leaves the whole log copied so that it starts over
     * at the next commit (see checkpointer.ts). If the worker fails, the
     * store checkpoints on its own connection, as the worker would.
     */
    private async checkpointRound(): Promise<void> {
        try {
            this.checkpointer ??= new Checkpointer(this.path);
            // Beside the writes: the file keeps up with the log.
            let r = await this.checkpointer.checkpoint();
            this.noteCheckpoint(r);
            if (r.log < this.logFrames) {
                this.checkpoints.rounds++;
                return;
            }
            // The log is long: it starts over. Beside the writes again, until
            // a checkpoint finds little new since the one before.
            for (let i = 0; i < 2 && this.db; i++) {
                const before = r.log;
                r = await this.checkpointer.checkpoint();
                this.noteCheckpoint(r);
                if (r.log - before < HOLD_FRAMES) {
                    break;
                }
            }
            if (!this.db) {
                return;
            }
            this.holding = true;
            const held = Date.now();
            try {
                this.noteCheckpoint(await this.checkpointer.checkpoint());
            } finally {
                this.holding = false;
                this.checkpoints.heldMs += Date.now() - held;
                this.release();
            }
            this.checkpoints.rounds++;
            this.checkpoints.held++;
        } catch {
            this.checkpoints.failures++;
            this.checkpointHere();
        }
    }

    private noteCheckpoint(r: { log: number }): void {
        this.checkpoints.runs++;
        this.checkpoints.maxLog = Math.max(this.checkpoints.maxLog, r.log);
    }

    /** Commit the writes asked for while commits were held back. */
    private release(): void {
        if (this.pending.length > 0 && !this.flushScheduled) {
            this.flushScheduled = true;
            setImmediate(() => this.flush(false));
        }
    }

    /** A checkpoint on the main connection, with syncs (the worker could not run it). */
    private checkpointHere(): void {
        const db = this.db;
        if (!db || db.inTransaction) {
            return;
        }
        try {
            db.pragma('synchronous = FULL');
            db.pragma('wal_checkpoint(PASSIVE)');
        } catch {
            // busy: the next round catches up
        } finally {
            db.pragma('synchronous = NORMAL');
        }
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

    /** Sync the log now, on this thread (synchronous writes that must be durable when they return). */
    private syncNow(): void {
        if (this.walFd !== null) {
            fdatasyncSync(this.walFd);
        }
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

/** Make a new file's directory entry durable (the log is created beside the database). */
function syncDir(dir: string): void {
    let fd: number | null = null;
    try {
        fd = openSync(dir, 'r');
        fsyncSync(fd);
    } catch {
        // some file systems refuse a directory sync; the file's own sync still stands
    } finally {
        if (fd !== null) {
            closeSync(fd);
        }
    }
}

function asError(err: unknown): Error {
    return err instanceof Error ? err : new Error(String(err));
}
