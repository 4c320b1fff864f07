// The embedded store's lock file (lib/stor/sqlite/lock.ts), in process:
// a live holder refuses the store, naming its pid; a dead one's lock, or a
// lock file that is not a lock, is taken over; opening the same file twice
// in one process is allowed and the lock goes with the last close.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { StoreOpenError } from '../../lib/stor/sqlite/lock.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';

function storePath(t: { teardown(fn: () => unknown): void }): string {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-lock-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'sapi.sqlite');
}

function lockOf(pid: number, host = hostname()): string {
    return `${JSON.stringify({ pid, host, token: 'test' })}\n`;
}

t.test('a live holder refuses the store, naming the store and its pid', async (t) => {
    const path = storePath(t);
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    t.teardown(() => holder.kill('SIGKILL'));
    writeFileSync(`${path}.lock`, lockOf(holder.pid as number));
    const store = new SqliteStore({ path });
    let err: unknown;
    try {
        await store.init();
    } catch (e) {
        err = e;
    }
    t.type(err, StoreOpenError);
    t.match((err as Error).message, `store ${path} is in use by another SAPI process (pid ${holder.pid}); lock file ${path}.lock`);
    t.equal((err as StoreOpenError).holder, holder.pid);
    t.notOk(existsSync(path), 'SQLite never touched the file');
    t.equal(readFileSync(`${path}.lock`, 'utf8'), lockOf(holder.pid as number), "the holder's lock is left alone");
});

t.test('a holder on another host (shared storage) cannot be checked, so it holds', async (t) => {
    const path = storePath(t);
    writeFileSync(`${path}.lock`, lockOf(12345, 'some-other-host'));
    const store = new SqliteStore({ path });
    await t.rejects(store.init(), /in use by another SAPI process \(pid 12345 on host some-other-host\)/);
});

t.test("a dead holder's lock, or a file that is not a lock, is taken over", async (t) => {
    const path = storePath(t);
    const dead = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    for (const stale of [lockOf(dead.pid as number), '', 'garbage', lockOf(process.pid)]) {
        writeFileSync(`${path}.lock`, stale);
        const store = new SqliteStore({ path });
        await store.init();
        t.match(readFileSync(`${path}.lock`, 'utf8'), `"pid":${process.pid},`, `taken over: ${JSON.stringify(stale).slice(0, 40)}`);
        await store.close();
        t.notOk(existsSync(`${path}.lock`), 'and removed on close');
    }
});

t.test('one process may open the file twice; the lock goes with the last close', async (t) => {
    const path = storePath(t);
    const a = new SqliteStore({ path });
    const b = new SqliteStore({ path });
    await a.init();
    await b.init();
    await a.close();
    t.ok(existsSync(`${path}.lock`), 'still held by the second');
    await b.close();
    t.notOk(existsSync(`${path}.lock`));
    const memory = new SqliteStore({ path: ':memory:' });
    await memory.init();
    await memory.close();
});

t.test('a lock file taken by someone else meanwhile is not removed by close', async (t) => {
    const path = storePath(t);
    const store = new SqliteStore({ path });
    await store.init();
    writeFileSync(`${path}.lock`, lockOf(1, 'elsewhere'));
    await store.close();
    t.equal(readFileSync(`${path}.lock`, 'utf8'), lockOf(1, 'elsewhere'));
});
