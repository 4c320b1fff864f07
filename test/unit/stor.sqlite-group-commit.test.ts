// Group commit in the embedded store: writes asked for together commit in
// one transaction; each is answered only once that transaction is committed
// (seen from another connection to the file); a write that fails fails alone
// and leaves nothing of itself behind; a commit that fails answers no write.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
