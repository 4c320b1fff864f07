// Checkpoints of the embedded store, off the event loop: a worker thread
// with its own connection to the database file copies the write-ahead log
// into the file while the main thread goes on serving requests and
// committing writes.
//
// The worker's connection runs `synchronous = FULL`, so each checkpoint
// syncs the log before it writes the database file, and syncs the file
// before it records the log as copied: only then may the log be reused.
// A crash at any point of a checkpoint leaves a log that still holds every
// committed write not yet in the synced file, and SQLite replays it on the
// next open.
//
// A checkpoint run while writes go on copies what was committed when it
// started; the log can only start over (be reused from its beginning) once
// a checkpoint has copied all of it. So a round is two checkpoints: the
// first, long one runs beside the writes; the second, short one runs while
// the store holds back new commits (see group-commit.ts), copies the little
// committed meanwhile, and leaves the whole log copied, so the next commit
// starts the log over. The log stays about one round of writes long.

import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';

/** What one checkpoint did, in log frames (pages). */
export interface CheckpointResult {
    /** Frames in the log when the checkpoint ran. */
    log: number;
    /** Frames of it copied into the database file, by this and earlier checkpoints. */
    checkpointed: number;
}

/** The worker's program (CommonJS, run from a string: one file whether the store runs compiled or from source). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = FULL');
db.pragma('wal_autocheckpoint = 0');
parentPort.on('message', (m) => {
    if (m === 'close') {
        db.close();
        parentPort.postMessage({ closed: true });
        parentPort.close();
        return;
    }
    try {
        const r = db.pragma('wal_checkpoint(PASSIVE)')[0];
        parentPort.postMessage({ log: r.log, checkpointed: r.checkpointed });
    } catch (err) {
        parentPort.postMessage({ error: String((err && err.message) || err) });
    }
});
`;

/** Longer than any checkpoint of a sane disk; a worker silent for this long is taken for dead. */
const ANSWER_MS = 5 * 60 * 1000;

interface Reply {
    log?: number;
    checkpointed?: number;
    error?: string;
    closed?: boolean;
}

/** One worker thread checkpointing the store at `path`; one checkpoint at a time. */
export class Checkpointer {
    private readonly worker: Worker;
    /** The caller of the checkpoint or close under way. */
    private waiting: ((reply: Reply) => void) | null = null;
    private dead: Error | null = null;

    constructor(path: string) {
        const load = createRequire(import.meta.url);
        const module = load.resolve('better-sqlite3');
        // Node's worker threads are loaded with the first checkpointer (after
        // the first thousand writes), not with the store: no start needs them.
        const { Worker: WorkerThread } = load('node:worker_threads') as typeof import('node:worker_threads');
        // No node options of the main thread (a loader, an eval'd script): the worker's program is plain CommonJS.
        this.worker = new WorkerThread(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { path, module }, stdout: false, stderr: false });
        // Idle, the worker keeps no process alive; a checkpoint under way does (ask()).
        this.worker.unref();
        this.worker.on('message', (reply: Reply) => this.settle(reply));
        this.worker.on('error', (err: Error) => {
            this.dead = err;
            this.settle({ error: err.message });
        });
        this.worker.on('exit', () => {
            this.dead ??= new Error('checkpoint worker exited');
            this.settle({ error: this.dead.message });
        });
    }

    private settle(reply: Reply): void {
        const w = this.waiting;
        this.waiting = null;
        this.worker.unref();
        w?.(reply);
    }

    private ask(message: string): Promise<Reply> {
        if (this.dead) {
            return Promise.resolve({ error: this.dead.message });
        }
        if (this.waiting) {
            return Promise.reject(new Error('a checkpoint is already running'));
        }
        return new Promise<Reply>((resolve) => {
            // A worker that stops answering is ended; the store then checkpoints by itself.
            const timer = setTimeout(() => {
                this.dead = new Error('checkpoint worker stopped answering');
                this.settle({ error: this.dead.message });
                void this.worker.terminate();
            }, ANSWER_MS);
            this.waiting = (reply) => {
                clearTimeout(timer);
                resolve(reply);
            };
            this.worker.ref();
            this.worker.postMessage(message);
        });
    }

    /** One PASSIVE checkpoint, with syncs; rejects if it failed (the log is then left as it was). */
    async checkpoint(): Promise<CheckpointResult> {
        const r = await this.ask('checkpoint');
        if (r.error !== undefined || r.log === undefined || r.checkpointed === undefined) {
            throw new Error(`checkpoint failed: ${r.error ?? 'no answer'}`);
        }
        return { log: r.log, checkpointed: r.checkpointed };
    }

    /** Close the worker's connection and end the thread (after the checkpoint under way, if any: the caller waits for it first). */
    async close(): Promise<void> {
        if (!this.dead) {
            await this.ask('close');
        }
        await this.worker.terminate();
    }
}
