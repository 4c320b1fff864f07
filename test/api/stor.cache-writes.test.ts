// The local cache over Moray writes only what changed: reading an unchanged
// object, or refreshing an unchanged bucket, writes no row of the local
// copy; a changed object is written once, and an object Moray no longer
// has is deleted. A write through the cache reaches the copy at the end
// of that turn of the event loop. Writes are counted by SQLite itself (triggers on the
// bucket tables, installed through a second connection to the cache file).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import t, { type Test } from 'tap';

import { ALL_BUCKETS } from '../../lib/stor/buckets.js';
import { CachedStore } from '../../lib/stor/cached.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import { startFakeMoray } from '../lib/fake-moray.js';
import { testLog } from '../lib/harness.js';

interface Setup {
    moray: MorayStore;
    local: SqliteStore;
    cached: CachedStore;
    /** Rows of the local copy inserted, updated or deleted so far. */
    writes: () => Record<string, number>;
}

async function setUp(t: Test): Promise<Setup> {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    const dir = mkdtempSync(join(tmpdir(), 'sapi-cache-writes-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const moray = new MorayStore({ connect: { host: fake.host, port: fake.port }, retryMinDelayMs: 10, retryMaxDelayMs: 200 });
    const local = new SqliteStore({ path: join(dir, 'cache.sqlite') });
    const cached = new CachedStore(moray, local, testLog());
    await cached.init();
    t.teardown(() => cached.close());

    const spy = new Database(join(dir, 'cache.sqlite'));
    t.teardown(() => spy.close());
    spy.pragma('busy_timeout = 5000');
    spy.exec('CREATE TABLE test_writes (bucket TEXT NOT NULL, op TEXT NOT NULL)');
    for (const def of ALL_BUCKETS) {
        for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
            spy.exec(
                `CREATE TRIGGER "test_${def.name}_${op}" AFTER ${op} ON "${def.name}" ` +
                    `BEGIN INSERT INTO test_writes (bucket, op) VALUES ('${def.name}', '${op}'); END`,
            );
        }
    }
    const writes = (): Record<string, number> => {
        const out: Record<string, number> = {};
        for (const r of spy.prepare('SELECT op, count(*) AS n FROM test_writes GROUP BY op').all() as { op: string; n: number }[]) {
            out[r.op] = r.n;
        }
        return out;
    };
    return { moray, local, cached, writes };
}

/** The end of this turn of the event loop: write-throughs reach the copy then (all of a turn in one transaction). */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

const app = (name: string): { uuid: string; name: string; owner_uuid: string; params: Record<string, unknown> } => ({
    uuid: randomUUID(),
    name,
    owner_uuid: randomUUID(),
    params: { a: 1, nested: { b: [1, 2] } },
});

t.test('reads of unchanged objects and refreshes of unchanged buckets write nothing', async (t) => {
    const { moray, local, cached, writes } = await setUp(t);
    const one = app('one');
    const two = app('two');
    await cached.put('sapi_applications', one);
    await cached.put('sapi_applications', two);
    await turn();
    t.same(writes(), { INSERT: 2 }, 'writes through the cache are copied (one row each)');

    const before = local.getSync('sapi_applications', one.uuid);
    for (let i = 0; i < 5; i++) {
        t.same((await cached.get('sapi_applications', one.uuid))?.value, one);
    }
    t.same(writes(), { INSERT: 2 }, 'repeated reads of an unchanged object write nothing');
    t.same(local.getSync('sapi_applications', one.uuid), before, 'the local row is as it was');

    let synced = await cached.sync();
    t.same(synced, { copied: 2, written: 0, dropped: 0 }, 'a refresh reads everything');
    synced = await cached.sync();
    t.same(synced, { copied: 2, written: 0, dropped: 0 });
    t.same(writes(), { INSERT: 2 }, 'refreshes of unchanged buckets write nothing');

    // Changed behind the cache's back (another SAPI, say): copied once.
    const changed = { ...one, params: { a: 2 } };
    await moray.put('sapi_applications', changed);
    t.same((await cached.get('sapi_applications', one.uuid))?.value, changed);
    t.same((await cached.get('sapi_applications', one.uuid))?.value, changed);
    await turn();
    t.same(writes(), { INSERT: 2, UPDATE: 1 }, 'a changed object is written once');
    t.same(local.getSync('sapi_applications', one.uuid)?.value, changed, 'the local copy follows');

    const three = app('three');
    await moray.put('sapi_applications', three);
    await moray.put('sapi_applications', { ...two, name: 'deux' });
    synced = await cached.sync();
    t.same(synced, { copied: 3, written: 2, dropped: 0 }, 'a refresh writes only the new and the changed');
    t.same(writes(), { INSERT: 3, UPDATE: 2 });
    t.same(local.getSync('sapi_applications', two.uuid)?.value, { ...two, name: 'deux' });
});

t.test('deletes are still copied', async (t) => {
    const { moray, local, cached, writes } = await setUp(t);
    const one = app('one');
    const two = app('two');
    const three = app('three');
    for (const a of [one, two, three]) {
        await cached.put('sapi_applications', a);
    }
    await cached.del('sapi_applications', one.uuid);
    await turn();
    t.equal(local.getSync('sapi_applications', one.uuid), null, 'a delete through the cache');

    await moray.del('sapi_applications', two.uuid);
    t.equal(await cached.get('sapi_applications', two.uuid), null);
    await turn();
    t.equal(local.getSync('sapi_applications', two.uuid), null, 'an object gone from moray, seen by a read');

    await moray.del('sapi_applications', three.uuid);
    t.same(await cached.sync(), { copied: 0, written: 0, dropped: 1 });
    t.equal(local.getSync('sapi_applications', three.uuid), null, 'an object gone from moray, seen by a refresh');
    t.same(writes(), { INSERT: 3, DELETE: 3 });
});

t.test('batches through the cache copy only what changed', async (t) => {
    const { cached, writes } = await setUp(t);
    const one = app('one');
    const two = app('two');
    await cached.batch([
        { op: 'put', bucket: 'sapi_applications', value: one },
        { op: 'put', bucket: 'sapi_applications', value: two },
    ]);
    await turn();
    t.same(writes(), { INSERT: 2 });
    await cached.batch([
        { op: 'put', bucket: 'sapi_applications', value: one },
        { op: 'put', bucket: 'sapi_applications', value: { ...two, name: 'deux' } },
    ]);
    await turn();
    t.same(writes(), { INSERT: 2, UPDATE: 1 }, 'the unchanged object is not rewritten');
});
