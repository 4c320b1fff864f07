// The embedded store's connection to its file: creating the directory,
// taking the file for this process (lock.ts), opening SQLite in WAL mode
// with the pragmas the store runs under, bringing every bucket's table up
// to its current definition, keeping prepared statements, and closing it
// all again. What is written through the connection, and when it reaches
// the disk, is the business of the layer above it (group-commit.ts).

import { closeSync, existsSync, fdatasyncSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import Database from 'better-sqlite3';

import { ALL_BUCKETS, indexFieldValue, type BucketDef } from '../buckets.js';
import { StoreUnavailableError } from '../errors.js';
import type { JsonObject } from '../store.js';
import { errnoText } from '../../fs-errors.js';
import { lockStore, StoreOpenError, type StoreLock } from './lock.js';
import { createStatements, ident, missingColumns } from './schema.js';

/** A row of a bucket's table, as the store reads it. */
export interface Row {
    uuid: string;
    etag: string;
    value: string;
}

/** Pages SQLite keeps in memory (negative: KiB), beyond its 2 MiB default: indexes of a large DC stay cached. */
const CACHE_KIB = 32 * 1024;
/** A log that grew past this (a burst) is cut back to it when it starts over. */
const LOG_KEEP_BYTES = 128 * 1024 * 1024;

export class SqliteConnection {
    readonly path: string;
    protected db: Database.Database | null = null;
    /** This process's hold on the store file (lock.ts); none for ':memory:'. */
    private lock: StoreLock | null = null;
    /** Runs a function in a savepoint (inside the group's transaction). */
    protected savepoint: ((fn: () => unknown) => unknown) | null = null;
    /** The write-ahead log, opened to sync it; null for ':memory:'. */
    protected walFd: number | null = null;

    constructor(path: string) {
        this.path = path;
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
        const binding = addonPath();
        const db = new Database(this.path, binding === null ? {} : { nativeBinding: binding });
        db.pragma('journal_mode = WAL');
        const file = this.path !== ':memory:';
        // The store syncs the log itself after each group commit and
        // checkpoints in its worker, with syncs on (see group-commit.ts).
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

    /** Close the connection (which checkpoints the log into the file) and let the file go. */
    async close(): Promise<void> {
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

    protected conn(): Database.Database {
        if (!this.db) {
            throw new StoreUnavailableError('sqlite store is not open');
        }
        return this.db;
    }

    // ---- statement cache

    private stmts = new Map<string, Database.Statement>();

    protected stmt(sql: string): Database.Statement {
        let s = this.stmts.get(sql);
        if (!s) {
            s = this.conn().prepare(sql);
            this.stmts.set(sql, s);
        }
        return s;
    }
}

let addon: string | null | undefined;

/**
 * better-sqlite3's addon, where its build puts it, or null (then
 * better-sqlite3 looks for it itself). Named by path, the addon loads at
 * once; otherwise the `bindings` package finds it by trying a dozen paths
 * from a captured stack trace, which took ~15 ms of every start.
 */
function addonPath(): string | null {
    if (addon === undefined) {
        try {
            const main = createRequire(import.meta.url).resolve('better-sqlite3');
            const file = join(dirname(main), '..', 'build', 'Release', 'better_sqlite3.node');
            addon = existsSync(file) ? file : null;
        } catch {
            addon = null;
        }
    }
    return addon;
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

export function asError(err: unknown): Error {
    return err instanceof Error ? err : new Error(String(err));
}
