// Concurrent writes to Moray sharing one batch (lib/stor/moray/write-group.ts),
// against the fake Moray: writes made together go as one `batch` RPC, each
// is acknowledged only once it is in Moray, and one failing write never
// fails the others: it gets its own error, the others are written.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { EtagConflictError, NotFoundError } from '../../lib/stor/errors.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import type { JsonObject, Store, Stored } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const INSTANCES = 'sapi_instances';
const TOMBSTONES = 'sapi_tombstones';

/** The Moray store under the server's decorators (the local cache, metrics, ...). */
function morayUnder(store: Store): MorayStore {
    let s: unknown = store;
    while (s && !(s instanceof MorayStore)) {
        s = (s as { inner?: unknown }).inner;
    }
    if (!(s instanceof MorayStore)) {
        throw new Error('no Moray store under the server store');
    }
    return s;
}

async function storeOn(fake: FakeMoray): Promise<MorayStore> {
    const store = new MorayStore({ connect: { host: fake.host, port: fake.port }, retryMinDelayMs: 10, retryMaxDelayMs: 200 });
    await store.init();
    return store;
}

function inst(extra: JsonObject = {}): JsonObject {
    return { uuid: randomUUID(), service_uuid: randomUUID(), type: 'agent', ...extra };
}

/** The request count of every Moray `batch` RPC since `from` (those writing instances). */
function batchSizes(fake: FakeMoray, from = 0): number[] {
    return fake
        .requestsOf('batch')
        .slice(from)
        .map((r) => r.args[0] as { bucket: string }[])
        .filter((reqs) => reqs.some((q) => q.bucket === INSTANCES))
        .map((reqs) => reqs.length);
}

/** putObject RPCs writing instances. */
function instancePuts(fake: FakeMoray): number {
    return fake.requestsOf('putObject').filter((r) => r.args[0] === INSTANCES).length;
}

/** What Moray holds for a key: its etag and value, read straight from the fake. */
function inMoray(fake: FakeMoray, bucket: string, key: string): { etag: string; value: JsonObject } | null {
    const row = fake.state.buckets.get(bucket)?.rows.get(key);
    return row ? { etag: row._etag, value: JSON.parse(row.json) as JsonObject } : null;
}

t.test('puts made together share one batch; a failing condition fails only its own put', async (t) => {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    const store = await storeOn(fake);
    t.teardown(() => store.close());
    const held = await store.put(INSTANCES, inst({ n: 0 }));
    const before = fake.requestsOf('batch').length;
    const puts0 = instancePuts(fake);

    // Twelve inserts and one put conditional on an etag the object no longer has, in one turn.
    const fresh = Array.from({ length: 12 }, (_, i) => inst({ n: i + 1 }));
    const writes = fresh.map((v) => store.put(INSTANCES, v, { etag: null }));
    const stale = store.put(INSTANCES, { ...held.value, n: 99 }, { etag: 'BADBADBA' });
    const settled = await Promise.allSettled([...writes, stale]);

    for (const [i, r] of settled.slice(0, 12).entries()) {
        t.equal(r.status, 'fulfilled', `insert ${i} acknowledged`);
        const got = r.status === 'fulfilled' ? (r.value as Stored) : null;
        const row = inMoray(fake, INSTANCES, fresh[i]?.uuid as string);
        t.ok(row, `insert ${i} is in Moray`);
        t.equal(got?.etag, row?.etag, `insert ${i} answers the etag Moray gave it`);
    }
    const last = settled[12];
    t.equal(last?.status, 'rejected', 'the stale put fails');
    t.ok(last?.status === 'rejected' && last.reason instanceof EtagConflictError, 'with an etag conflict');
    t.equal(inMoray(fake, INSTANCES, held.value.uuid as string)?.value.n, 0, 'and writes nothing');

    const sizes = batchSizes(fake, before);
    t.equal(sizes[0], 13, 'the thirteen writes went as one batch');
    t.same(sizes.slice(1), [12], 'that batch failed: the twelve others again as one batch');
    t.equal(instancePuts(fake) - puts0, 1, 'the failing put alone, as a plain putObject');
    t.ok(store.sharedBatches >= 2, 'shared batches are counted');
});

t.test('a shared batch that fails naming no write: each is retried alone and none is lost', async (t) => {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    const store = await storeOn(fake);
    t.teardown(() => store.close());
    const before = fake.requestsOf('batch').length;
    const puts0 = instancePuts(fake);
    fake.failNext('batch', 'QueryTimeoutError');
    const values = Array.from({ length: 8 }, (_, i) => inst({ n: i }));
    const out = await Promise.all(values.map((v) => store.put(INSTANCES, v, { etag: null })));
    for (const [i, v] of values.entries()) {
        t.equal(out[i]?.etag, inMoray(fake, INSTANCES, v.uuid as string)?.etag, `put ${i} in Moray, with its etag`);
    }
    t.same(batchSizes(fake, before), [8], 'one shared batch (it failed)');
    t.equal(instancePuts(fake) - puts0, 8, 'then each put alone');
});

t.test('deletes in a shared batch keep their tombstones; a delete of nothing gets NotFound', async (t) => {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    const store = await storeOn(fake);
    t.teardown(() => store.close());
    const kept = await Promise.all(Array.from({ length: 4 }, () => store.put(INSTANCES, inst())));
    const before = fake.requestsOf('batch').length;
    const missing = randomUUID();
    const newOne = inst();
    const settled = await Promise.allSettled([
        ...kept.map((s) => store.del(INSTANCES, s.value.uuid as string, { etag: s.etag })),
        store.del(INSTANCES, missing),
        store.put(INSTANCES, newOne),
        store.batch([{ op: 'put', bucket: INSTANCES, value: inst({ via: 'batch' }) }]),
    ]);
    t.same(
        settled.map((r) => r.status),
        ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
        'only the delete of nothing fails',
    );
    const failed = settled[4];
    t.ok(failed?.status === 'rejected' && failed.reason instanceof NotFoundError, 'with NotFound');
    for (const s of kept) {
        const uuid = s.value.uuid as string;
        t.equal(inMoray(fake, INSTANCES, uuid), null, 'deleted');
        t.ok(inMoray(fake, TOMBSTONES, `${INSTANCES}/${uuid}`), 'with its tombstone');
    }
    t.equal(inMoray(fake, TOMBSTONES, `${INSTANCES}/${missing}`), null, 'no tombstone for the delete that failed');
    t.ok(inMoray(fake, INSTANCES, newOne.uuid as string), 'the put beside them is written');
    t.equal(batchSizes(fake, before)[0], 4 * 2 + 2 + 1 + 1, 'all of them went as one batch first');
});

t.test('writes of one object never share a batch, and reach Moray in order', async (t) => {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    const store = await storeOn(fake);
    t.teardown(() => store.close());
    const v = inst({ n: 0 });
    const before = fake.requestsOf('batch').length;
    const out = await Promise.all([1, 2, 3].map((n) => store.put(INSTANCES, { ...v, n })));
    t.equal(inMoray(fake, INSTANCES, v.uuid as string)?.value.n, 3, 'the last one made is the one kept');
    t.equal(out[2]?.etag, inMoray(fake, INSTANCES, v.uuid as string)?.etag, 'and its etag is the current one');
    t.same(batchSizes(fake, before), [], 'each went alone');
});

t.test('record-only agent creates on Moray: batched, and one failing in the shared batch loses nothing', async (t) => {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    const h = await startSapi({
        viaCreateStore: true,
        config: {
            mode: 'full',
            store: { backend: 'moray', path: `${process.env.TMPDIR ?? '/tmp'}/sapi-wg-${process.pid}-${Date.now()}.sqlite` },
            moray: { host: fake.host, port: fake.port },
        },
    });
    t.teardown(h.close);
    const moray = morayUnder(h.store);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid, { name: 'vm-agent', type: 'agent', params: { image_uuid: randomUUID() } });
    // An agent already recorded: it will register again while its record is changed elsewhere.
    const again = { uuid: randomUUID(), server: randomUUID() };
    const first = await h.call('POST', '/instances', { body: { uuid: again.uuid, service_uuid: svc.uuid, params: { server_uuid: again.server } } });
    t.equal(first.status, 200);

    const wait = async (what: () => boolean): Promise<void> => {
        while (!what()) {
            await new Promise((r) => setTimeout(r, 5));
        }
    };
    const batches0 = fake.requestsOf('batch').length;
    const release = fake.block('batch');
    const agents = Array.from({ length: 15 }, () => ({ uuid: randomUUID(), server: randomUUID() }));
    const create = (a: { uuid: string; server: string }, metadata: JsonObject = {}) =>
        h.call('POST', '/instances', { body: { uuid: a.uuid, service_uuid: svc.uuid, params: { server_uuid: a.server }, metadata } });
    const creates = agents.map((a) => create(a));
    // Two batches held in flight (the first writes, alone or a few together); the other creates' writes wait to be sent together.
    const inFlight = (): number => batchSizes(fake, batches0).reduce((a, b) => a + b, 0);
    await wait(() => fake.held('batch') === 2 && inFlight() + moray.writesWaiting === 15);
    const waiting = moray.writesWaiting + 1;
    const reRegistration = create(again, { FROM: 'agent' });
    await wait(() => moray.writesWaiting === waiting);
    // Another SAPI changes that agent's record meanwhile: its put in the shared batch will conflict.
    const other = await storeOn(fake);
    t.teardown(() => other.close());
    const cur = (await other.get<JsonObject>(INSTANCES, again.uuid)) as Stored<JsonObject>;
    await other.put(INSTANCES, { ...cur.value, metadata: { FROM: 'elsewhere', KEPT: true } });
    release();

    const results = await Promise.all([...creates, reRegistration]);
    t.same(
        results.map((r) => r.status),
        Array.from({ length: 16 }, () => 200),
        'every create answered 200',
    );
    for (const a of agents) {
        const row = inMoray(fake, INSTANCES, a.uuid);
        t.equal((row?.value.params as JsonObject | undefined)?.server_uuid, a.server, `${a.uuid} is in Moray`);
    }
    const row = inMoray(fake, INSTANCES, again.uuid);
    t.same(row?.value.metadata, { FROM: 'agent', KEPT: true }, 'the conflicting one re-read and kept the other change');

    const sizes = batchSizes(fake, batches0);
    t.ok(sizes.length < 16, `fewer batch RPCs (${sizes.length}) than creates (16)`);
    t.ok(
        sizes.some((n) => n === waiting),
        `the ${waiting} waiting writes went as one batch (batch sizes ${sizes.join(', ')})`,
    );
    t.ok(
        sizes.some((n) => n === waiting - 1),
        `it failed on the one conflict: the ${waiting - 1} others as one batch again`,
    );
});
