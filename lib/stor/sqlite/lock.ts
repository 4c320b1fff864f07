// One process per embedded store. A lock file beside the SQLite file names
// the process that holds the store; another process that finds it, with
// that process still alive, refuses to open the store. A lock left by a
// process that died without removing it (SIGKILL, a crash, a power cut) is
// taken over. Opening the same file again inside the holding process is
// allowed (the tests restart servers on one store in one process).
//
// The lock file appears with its content in one step (written under a
// private name, then hard-linked into place, which fails if a lock is
// already there), so no reader ever sees a half-written lock.

import { randomUUID } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';

import { errnoText } from '../../fs-errors.js';

/** The store cannot be opened for writing by this process: one line naming the path (and the holder). */
export class StoreOpenError extends Error {
    override name = 'StoreOpenError';
    constructor(
        message: string,
        readonly path: string,
        /** The pid of the process that holds the store, when that is the reason. */
        readonly holder?: number,
    ) {
        super(message);
    }
}

interface Holder {
    pid: number;
    host: string;
    token: string;
}

interface Held {
    lockPath: string;
    token: string;
    count: number;
}

const held = new Map<string, Held>();
let exitHook = false;

export interface StoreLock {
    release(): void;
}

/** Take the store at `path` for this process, or throw StoreOpenError. */
export function lockStore(path: string): StoreLock {
    const abs = resolve(path);
    const mine = held.get(abs);
    if (mine) {
        mine.count++;
        return releaser(abs);
    }
    checkWritable(abs);
    const lockPath = `${abs}.lock`;
    const token = randomUUID();
    const me: Holder = { pid: process.pid, host: hostname(), token };
    for (let attempt = 0; attempt < 10; attempt++) {
        if (create(lockPath, me)) {
            held.set(abs, { lockPath, token, count: 1 });
            if (!exitHook) {
                exitHook = true;
                // process.exit() and uncaught exceptions still run 'exit' listeners.
                process.on('exit', releaseAll);
            }
            return releaser(abs);
        }
        const text = readText(lockPath);
        if (text === null) {
            continue; // removed meanwhile: try again
        }
        const other = parse(text);
        if (other && alive(other)) {
            const where = other.host === me.host ? `pid ${other.pid}` : `pid ${other.pid} on host ${other.host}`;
            throw new StoreOpenError(`store ${abs} is in use by another SAPI process (${where}); lock file ${lockPath}`, abs, other.pid);
        }
        takeOver(lockPath, text);
    }
    throw new StoreOpenError(`store ${abs}: could not take the lock file ${lockPath} (other processes keep taking it)`, abs);
}

function releaser(abs: string): StoreLock {
    let done = false;
    return {
        release: () => {
            if (done) {
                return;
            }
            done = true;
            const h = held.get(abs);
            if (h && --h.count === 0) {
                held.delete(abs);
                removeIfMine(h);
            }
        },
    };
}

function releaseAll(): void {
    for (const h of held.values()) {
        removeIfMine(h);
    }
    held.clear();
}

function removeIfMine(h: Held): void {
    const text = readText(h.lockPath);
    if (text !== null && parse(text)?.token === h.token) {
        try {
            unlinkSync(h.lockPath);
        } catch {
            // gone already
        }
    }
}

/**
 * The directory must take new files (the lock, SQLite's -wal and -shm) and
 * the database file and its companions, where they exist, must be writable;
 * else the store would open and fail on its first write.
 */
function checkWritable(abs: string): void {
    const dir = dirname(abs);
    try {
        accessSync(dir, constants.W_OK | constants.X_OK);
    } catch (err) {
        throw new StoreOpenError(`store directory ${dir} is not writable: ${errnoText(err)}`, abs);
    }
    for (const f of [abs, `${abs}-wal`, `${abs}-shm`]) {
        if (!existsSync(f)) {
            continue;
        }
        try {
            accessSync(f, constants.R_OK | constants.W_OK);
        } catch (err) {
            throw new StoreOpenError(`store file ${f} is not writable: ${errnoText(err)}`, abs);
        }
    }
}

/** Create the lock file with `me` in it; false if a lock file is already there. */
function create(lockPath: string, me: Holder): boolean {
    const content = `${JSON.stringify(me)}\n`;
    const tmp = `${lockPath}.${me.pid}.${me.token}`;
    try {
        writeFileSync(tmp, content, { mode: 0o644 });
    } catch (err) {
        throw new StoreOpenError(`cannot create the lock file ${lockPath}: ${errnoText(err)}`, lockPath.replace(/\.lock$/, ''));
    }
    try {
        linkSync(tmp, lockPath);
        return true;
    } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') {
            return false;
        }
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS') {
            return createExclusive(lockPath, content); // no hard links on this file system
        }
        throw new StoreOpenError(`cannot create the lock file ${lockPath}: ${errnoText(err)}`, lockPath.replace(/\.lock$/, ''));
    } finally {
        try {
            unlinkSync(tmp);
        } catch {
            // best effort
        }
    }
}

function createExclusive(lockPath: string, content: string): boolean {
    let fd: number;
    try {
        fd = openSync(lockPath, 'wx', 0o644);
    } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
            return false;
        }
        throw new StoreOpenError(`cannot create the lock file ${lockPath}: ${errnoText(err)}`, lockPath.replace(/\.lock$/, ''));
    }
    try {
        writeSync(fd, content);
    } finally {
        closeSync(fd);
    }
    return true;
}

/**
 * Remove a stale lock whose text was `seen`. It is first moved aside under a
 * private name, so that if another process replaced it in the meantime with
 * a live lock of its own, that lock can be put back instead of deleted.
 */
function takeOver(lockPath: string, seen: string): void {
    const aside = `${lockPath}.stale.${process.pid}.${randomUUID()}`;
    try {
        renameSync(lockPath, aside);
    } catch {
        return; // removed meanwhile
    }
    if (readText(aside) !== seen) {
        try {
            linkSync(aside, lockPath);
        } catch {
            // a third process took the store meanwhile; its lock stands
        }
    }
    try {
        unlinkSync(aside);
    } catch {
        // best effort
    }
}

function readText(path: string): string | null {
    try {
        return readFileSync(path, 'utf8');
    } catch {
        return null;
    }
}

function parse(text: string): Holder | null {
    try {
        const h = JSON.parse(text) as Partial<Holder>;
        return typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.token === 'string' ? (h as Holder) : null;
    } catch {
        return null; // not a lock this code wrote: stale
    }
}

/** Whether the process that wrote the lock may still be running. */
function alive(h: Holder): boolean {
    if (h.host !== hostname()) {
        return true; // a process elsewhere (shared storage): it cannot be checked from here
    }
    if (h.pid === process.pid) {
        return false; // not held in this process (see `held`): a lock from an earlier life of this pid
    }
    try {
        process.kill(h.pid, 0);
        return true;
    } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
    }
}
