// Group commit in the embedded store: writes asked for together commit in
// one transaction; each is answered only once that transaction is committed
// (seen from another connection to the file); a write that fails fails alone
// and leaves nothing of itself behind; a commit that fails answers no write.
// Checkpoints run in a worker thread: they happen, the log stays short,
// close() stops the worker, and a kill in the middle of them loses no
// acknowledged write.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import Database from 'better-sqlite3';
import t, { type Test } from 'tap';

import { EtagConflictError, NotFoundError } from '../../lib/stor/errors.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';

const INSTANCES = 'sapi_instances';
const SERVICE = randomUUID();

function inst(uuid = randomUUID()): { uuid: string; service_uuid: string; type: string; params: { alias: string } } {
    return { uuid, service_uuid: SERVICE, type: 'vm', params: { alias: uuid.slice(0, 8) } };
}

async function open(t: Test): Promise<{ store: SqliteStore; other: Database.Database; committed: (uuid: string) => boolean }> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-group-'));
    const path = join(dir, 'sapi.sqlite');
    const store = new SqliteStore({ path });
    await store.init();
    // A second connection sees only what has been committed.
    const other = new Database(path, { readonly: true });
    t.teardown(async () => {
        other.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
    });
    const committed = (uuid: string): boolean => other.prepare(`SELECT 1 FROM ${INSTANCES} WHERE uuid = ?`).get(uuid) !== undefined;
    return { store, other, committed };
}

t.test('the store runs WAL and its own checkpoints', async (t) => {
    const { store } = await open(t);
    const db = (store as unknown as { db: Database.Database }).db;
    t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    t.equal(db.pragma('wal_autocheckpoint', { simple: true }), 0, "checkpoints are the store's, with syncs");
});

t.test('concurrent writes commit as one group, each answered after the commit', async (t) => {
    const { store, committed } = await open(t);
    const before = { ...store.commits };
    const values = Array.from({ length: 10 }, () => inst());
    const answered: string[] = [];
    const seenAtAnswer: boolean[] = [];
    const syncedAtAnswer: boolean[] = [];
    const writes = values.map((v) =>
        store.put(INSTANCES, v, { etag: null }).then((stored) => {
            answered.push(stored.value.uuid);
            seenAtAnswer.push(committed(v.uuid));
            syncedAtAnswer.push(store.commits.syncs > before.syncs);
            return stored;
        }),
    );
    // Asked for, not yet committed: nothing visible, nothing answered.
    t.equal(answered.length, 0, 'no write answered before the group commits');
    t.notOk(committed(values[0]!.uuid), 'nothing committed while the group forms');
    const stored = await Promise.all(writes);
    t.equal(store.commits.groups - before.groups, 1, 'one commit for the ten writes');
    t.equal(store.commits.writes - before.writes, 10);
    t.same(seenAtAnswer, Array(10).fill(true), 'each write was committed when it was answered');
    t.same(syncedAtAnswer, Array(10).fill(true), 'and the log synced');
    t.same(
        stored.map((s) => s.value.uuid),
        values.map((v) => v.uuid),
    );
    t.ok(stored.every((s) => typeof s.etag === 'string' && s.etag.length > 0));
});

t.test('writes asked for after a commit form the next group', async (t) => {
    const { store } = await open(t);
    const before = store.commits.groups;
    await Promise.all([store.put(INSTANCES, inst()), store.put(INSTANCES, inst())]);
    await Promise.all([store.put(INSTANCES, inst()), store.del(INSTANCES, (await store.put(INSTANCES, inst())).value.uuid)]);
    t.equal(store.commits.groups - before, 3);
});

t.test('a failing write fails alone: the others of its group commit, it leaves nothing', async (t) => {
    const { store, committed } = await open(t);
    const existing = await store.put(INSTANCES, inst());
    const a = inst();
    const d = inst();
    const half = inst();
    const before = store.commits.groups;
    const results = await Promise.allSettled([
        store.put(INSTANCES, a, { etag: null }),
        // A conditional write on a stale etag.
        store.put(INSTANCES, { ...existing.value, params: { alias: 'changed' } }, { etag: 'not-the-etag' }),
        // A batch whose second op fails: its first op must not be stored either.
        store.batch([
            { op: 'put', bucket: INSTANCES, value: half },
            { op: 'del', bucket: INSTANCES, uuid: randomUUID() },
        ]),
        // An insert of a uuid that exists.
        store.put(INSTANCES, { ...existing.value }, { etag: null }),
        store.put(INSTANCES, d, { etag: null }),
    ]);
    t.equal(store.commits.groups - before, 1, 'one group');
    t.same(
        results.map((r) => r.status),
        ['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled'],
    );
    t.ok((results[1] as PromiseRejectedResult).reason instanceof EtagConflictError);
    t.ok((results[2] as PromiseRejectedResult).reason instanceof NotFoundError);
    t.ok((results[3] as PromiseRejectedResult).reason instanceof EtagConflictError);
    t.ok(committed(a.uuid) && committed(d.uuid), 'the good writes are committed');
    t.notOk(committed(half.uuid), 'no half of the failed batch');
    t.same((await store.get(INSTANCES, existing.value.uuid))?.value, existing.value, 'the conflicting writes changed nothing');
});

t.test('a commit that fails answers no write of its group with success, and stores none', async (t) => {
    const { store, committed } = await open(t);
    // A deferred constraint fails the transaction at COMMIT, after every write ran.
    const db = (store as unknown as { db: Database.Database }).db;
    db.pragma('foreign_keys = ON');
    db.exec('CREATE TABLE parent (id TEXT PRIMARY KEY)');
    db.exec('CREATE TABLE child (pid TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)');
    db.exec(
        `CREATE TRIGGER poison AFTER INSERT ON ${INSTANCES} WHEN json_extract(NEW.value, '$.params.alias') = 'poison' BEGIN INSERT INTO child VALUES ('none'); END`,
    );
    const good = inst();
    const bad = { ...inst(), params: { alias: 'poison' } };
    const results = await Promise.allSettled([store.put(INSTANCES, good), store.put(INSTANCES, bad)]);
    t.same(
        results.map((r) => r.status),
        ['rejected', 'rejected'],
    );
    t.notOk(committed(good.uuid) || committed(bad.uuid), 'nothing of the group is stored');
    // The store goes on: the next group commits.
    const next = inst();
    await store.put(INSTANCES, next);
    t.ok(committed(next.uuid));
});

t.test('closing commits the writes already asked for', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-group-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'sapi.sqlite');
    const store = new SqliteStore({ path });
    await store.init();
    const v = inst();
    const write = store.put(INSTANCES, v);
    await store.close();
    await write;
    const again = new SqliteStore({ path });
    await again.init();
    t.ok(await again.get(INSTANCES, v.uuid), 'stored');
    await again.close();
    await t.rejects(store.put(INSTANCES, inst()), { name: 'StoreUnavailableError' }, 'a closed store refuses writes');
});

/** An instance with a large metadata value: each write adds several pages to the log. */
function bigInst(): ReturnType<typeof inst> & { metadata: { blob: string } } {
    return { ...inst(), metadata: { blob: randomUUID().repeat(200) } };
}

async function until(cond: () => boolean): Promise<void> {
    for (let i = 0; i < 2000 && !cond(); i++) {
        await new Promise((r) => setTimeout(r, 10));
    }
}

t.test('checkpoints run in the worker and the log starts over: it stays short', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-group-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'sapi.sqlite');
    const store = new SqliteStore({ path, checkpointWrites: 20, logFrames: 64 });
    await store.init();
    const internals = store as unknown as { round: Promise<void> | null; checkpointer: unknown };
    const ROUNDS = 100;
    const PER = 30;
    let maxWal = 0;
    for (let r = 0; r < ROUNDS; r++) {
        await Promise.all(Array.from({ length: PER }, () => store.put(INSTANCES, bigInst())));
        maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
        // However slow the machine, the worker keeps up: the test does not race it.
        await until(() => internals.round === null);
    }
    await until(() => internals.round === null);
    const written = ROUNDS * PER * 7200; // bytes of values alone
    t.ok(internals.checkpointer, 'a checkpoint worker runs');
    t.ok(store.checkpoints.runs >= 2, `checkpoints happened (${store.checkpoints.runs})`);
    t.ok(store.checkpoints.held >= 1, `the log started over (${store.checkpoints.held} times)`);
    t.equal(store.checkpoints.failures, 0, 'no checkpoint failed');
    t.ok(maxWal < written / 4, `the log stayed short: at most ${maxWal} bytes for ${written} bytes written`);
    const db = (store as unknown as { db: Database.Database }).db;
    t.equal(db.pragma('wal_autocheckpoint', { simple: true }), 0, 'the main connection never checkpoints by itself');
    // Every write is there, read back through another connection.
    const other = new Database(path, { readonly: true });
    t.equal((other.prepare(`SELECT count(*) AS n FROM ${INSTANCES}`).get() as { n: number }).n, ROUNDS * PER);
    other.close();
    await store.close();
    t.equal(internals.checkpointer, null, 'close() stopped the worker');
    t.notOk(existsSync(`${path}-wal`), "the worker's connection closed first: the last one copied the whole log and removed it");
    const again = new SqliteStore({ path });
    await again.init();
    t.equal(await again.count(INSTANCES, { all: true }), ROUNDS * PER);
    await again.close();
});

t.test('close() waits for a checkpoint under way', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-group-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'sapi.sqlite');
    const store = new SqliteStore({ path, checkpointWrites: 5, logFrames: 16 });
    await store.init();
    const internals = store as unknown as { round: Promise<void> | null };
    await Promise.all(Array.from({ length: 10 }, () => store.put(INSTANCES, bigInst())));
    await until(() => internals.round !== null || store.checkpoints.runs > 0);
    await store.close();
    t.equal(internals.round, null, 'no round left running');
    t.notOk(existsSync(`${path}-wal`), 'the log was copied and removed at close');
});

// The child of the next test: writes without end, one line per acknowledged write.
const CHILD = `
const { SqliteStore } = await import(process.env.SAPI_STORE_MODULE);
const { randomUUID } = await import('node:crypto');
const store = new SqliteStore({ path: process.env.SAPI_CRASH_STORE, checkpointWrites: 8, logFrames: 48 });
await store.init();
const write = async () => {
    for (;;) {
        const uuid = randomUUID();
        await store.put('sapi_instances', { uuid, service_uuid: randomUUID(), type: 'vm', metadata: { blob: uuid.repeat(200) } });
        process.stdout.write('ack ' + uuid + ' ' + store.checkpoints.runs + '\\n');
    }
};
await Promise.all(Array.from({ length: 8 }, write));
`;

t.test('a kill in the middle of checkpoints loses no acknowledged write', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-group-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'sapi.sqlite');
    const child = spawn(process.execPath, ['--import=tsx', '--input-type=module', '-e', CHILD], {
        env: { ...process.env, SAPI_CRASH_STORE: path, SAPI_STORE_MODULE: fileURLToPath(new URL('../../lib/stor/sqlite/index.ts', import.meta.url)) },
        stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const acked: string[] = [];
    let runs = 0;
    for await (const line of createInterface({ input: child.stdout })) {
        const [word, uuid, n] = line.split(' ');
        if (word !== 'ack' || uuid === undefined) {
            continue;
        }
        acked.push(uuid);
        runs = Number(n);
        // Checkpoints every few writes: some checkpoint is under way most of the time.
        if (runs >= 10 && acked.length >= 300) {
            child.kill('SIGKILL');
            break;
        }
    }
    await exited;
    t.ok(runs >= 10, `checkpoints ran before the kill (${runs})`);
    const store = new SqliteStore({ path });
    await store.init();
    let lost = 0;
    for (const uuid of acked) {
        if (!(await store.get(INSTANCES, uuid))) {
            lost++;
        }
    }
    await store.close();
    t.equal(lost, 0, `no acknowledged write lost (${acked.length} acknowledged)`);
});
