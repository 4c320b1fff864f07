// The backfill of SAPI 2.1.2's instances on Moray: every row whose server
// and image are only inside params gets its top-level copies (so Moray's
// index finds it), in batches, resuming after a restart where it stopped,
// without undoing a write made meanwhile; searches stay exact throughout.

import t, { type Test } from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import { backfillMetaKey } from '../../lib/stor/moray/backfill.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { eq, type JsonObject } from '../../lib/stor/store.js';
import type { FakeMoray } from '../lib/fake-moray.js';
import { instances, instancesByServer, loadedMoray } from '../lib/sapi-212-dump.js';

const INSTANCES = BUCKETS.instances.name;

function rowsWithoutCopies(fake: FakeMoray): number {
    let n = 0;
    for (const row of fake.state.buckets.get(INSTANCES)?.rows.values() ?? []) {
        const v = JSON.parse(row.json) as { params?: JsonObject; server_uuid?: string; image_uuid?: string };
        const p = v.params ?? {};
        if ((typeof p.server_uuid === 'string' && v.server_uuid !== p.server_uuid) || (typeof p.image_uuid === 'string' && v.image_uuid !== p.image_uuid)) {
            n++;
        }
    }
    return n;
}

const byServer = (): Map<string, string[]> => instancesByServer();

async function searchesExact(t: Test, store: MorayStore, when: string): Promise<void> {
    for (const [server, want] of byServer()) {
        const found = await store.find(INSTANCES, eq('server_uuid', server), { limit: 1000 });
        t.same(found.items.map((s) => s.value.uuid).sort(), [...want].sort(), `${when}: server ${server.slice(0, 8)}`);
        t.equal(found.total, want.length, `${when}: total`);
    }
}

t.test('a restart in the middle resumes where the backfill stopped; searches exact meanwhile', async (t) => {
    const { fake, raw } = await loadedMoray(t);
    const before = rowsWithoutCopies(fake);
    t.ok(before > 200, `2.1.2 rows lack the copies (${before})`);

    // The first store rewrites one batch of 50, then its next write hangs.
    let batches = 0;
    const release = fake.block('batch', () => ++batches > 1);
    const first = new MorayStore({ client: raw, backfillBatchSize: 50, retryMinDelayMs: 10, retryMaxDelayMs: 50 });
    await first.init();
    while (fake.held('batch') === 0) {
        await new Promise((r) => setTimeout(r, 10));
    }
    t.ok(fake.held('batch') >= 1, 'the second batch is in flight (and maybe the next ones: they are pipelined)');
    const status = first.initializer?.status()[INSTANCES];
    t.equal(status?.phase, 'backfilling');
    t.ok((status?.backfill?.rewritten ?? 0) >= 1, 'some rows rewritten');
    t.ok([...(first.initializer?.pendingFields(INSTANCES) ?? [])].includes('server_uuid'), 'server_uuid not trusted to Moray yet');
    await searchesExact(t, first, 'during the backfill');
    const saved = JSON.parse(String((await raw.getObject('sapi_meta', backfillMetaKey(INSTANCES)))?.value.value)) as { lastId: number; done: boolean };
    t.equal(saved.done, false);
    t.ok(saved.lastId > 0, `progress saved (last _id ${saved.lastId})`);

    // "Restart": the first store goes away mid-write; a new one resumes.
    await first.close();
    release();
    const finds = fake.requestsOf('findObjects').length;
    const second = new MorayStore({ client: raw, backfillBatchSize: 50, retryMinDelayMs: 10, retryMaxDelayMs: 50 });
    t.teardown(() => second.close());
    await second.init();
    await second.initializer?.reindexDone();
    const resumed = fake
        .requestsOf('findObjects')
        .slice(finds)
        .map((r) => String(r.args[1]))
        .find((f) => f.includes('_id>='));
    t.match(resumed, new RegExp(`_id>=${saved.lastId + 1}\\b`), 'the new run starts after the saved _id');
    t.equal(rowsWithoutCopies(fake), 0, 'every row has its copies');
    t.equal(second.initializer?.isReady(INSTANCES), true);
    t.same([...(second.initializer?.pendingFields(INSTANCES) ?? [])], [], 'nothing pending');
    for (const [server, want] of byServer()) {
        const raw2 = await raw.findAll(INSTANCES, `(server_uuid=${server})`, { limit: 1000 });
        t.equal(raw2.length, want.length, `Moray's own index finds server ${server.slice(0, 8)}`);
    }
    await searchesExact(t, second, 'after the backfill');
    const done = JSON.parse(String((await raw.getObject('sapi_meta', backfillMetaKey(INSTANCES)))?.value.value)) as { done: boolean; version: number };
    t.same({ done: done.done, version: done.version }, { done: true, version: BUCKETS.instances.version }, 'recorded as done');

    // A third start does no backfill at all.
    const writes = fake.requestsOf('batch').length;
    const third = new MorayStore({ client: raw });
    t.teardown(() => third.close());
    await third.init();
    await third.initializer?.reindexDone();
    t.equal(fake.requestsOf('batch').length, writes, 'nothing rewritten again');
    t.equal(third.initializer?.isReady(INSTANCES), true);
});

t.test('a row changed between the read and the write keeps the change and gets its copies', async (t) => {
    const { fake, raw } = await loadedMoray(t);
    const victim = instances().find((v) => typeof (v.params as JsonObject | undefined)?.server_uuid === 'string') as JsonObject;
    // Hold the first batch, change the victim meanwhile (as SAPI 2.1.2 would: no copies).
    const release = fake.block('batch');
    const store = new MorayStore({ client: raw, backfillBatchSize: 1000, retryMinDelayMs: 10, retryMaxDelayMs: 50 });
    t.teardown(() => store.close());
    await store.init();
    while (fake.held('batch') === 0) {
        await new Promise((r) => setTimeout(r, 10));
    }
    await raw.putObject(INSTANCES, victim.uuid as string, { ...victim, metadata: { CHANGED: 'yes' } });
    release();
    await store.initializer?.reindexDone();
    const after = (await raw.getObject(INSTANCES, victim.uuid as string))?.value as JsonObject;
    t.same(after.metadata, { CHANGED: 'yes' }, 'the concurrent write is kept');
    t.equal(after.server_uuid, (victim.params as JsonObject).server_uuid, 'and the row has its copy');
    t.equal(rowsWithoutCopies(fake), 0);
});
