// How the embedded store's writes reach the disk: durable, grouped
// commits, and the checkpoint rounds that keep the write-ahead log short.
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

import { fdatasync, fdatasyncSync } from 'node:fs';

import { StoreUnavailableError } from '../errors.js';
import { Checkpointer } from './checkpointer.js';
import { asError, SqliteConnection } from './connection.js';

export interface SqliteStoreOptions {
    /** A file path, or ':memory:'. */
    path: string;
    /** Acknowledged writes between checkpoint rounds (tests make it small). */
    checkpointWrites?: number;
    /** Log length (pages) past which a round makes the log start over (tests make it small). */
    logFrames?: number;
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

export class GroupCommitStore extends SqliteConnection {
    /** Writes of the group being formed, committed together at the next turn of the loop. */
    private pending: Pending[] = [];
    private flushScheduled = false;
    /** Groups committed, writes in them and syncs of the log since the store opened (tests and metrics). */
    readonly commits = { groups: 0, writes: 0, syncs: 0 };
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
        super(opts.path);
        this.checkpointWrites = opts.checkpointWrites ?? CHECKPOINT_WRITES;
        this.logFrames = opts.logFrames ?? LOG_FRAMES;
    }

    override async close(): Promise<void> {
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
        await super.close();
    }

    // ---- group commit

    /** Queue a write for the group being formed; settles once the group has committed. */
    protected enqueue<R>(work: () => R, single = false): Promise<R> {
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
    protected maybeCheckpoint(written: number): void {
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

    /** Sync the log now, on this thread (synchronous writes that must be durable when they return). */
    protected syncNow(): void {
        if (this.walFd !== null) {
            fdatasyncSync(this.walFd);
        }
    }
}
