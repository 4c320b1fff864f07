// Numbered data migrations on Moray (lib/stor/moray/migrations.ts): they run
// in number order before the reindex, a restart resumes one at the cursor it
// saved, a finished one is not run again, and the progress an earlier
// SAPI-TS kept as `backfill.<bucket>` counts for migration 1.

import t from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import { backfillMetaKey } from '../../lib/stor/moray/backfill.js';
import { bucketConfig } from '../../lib/stor/moray/bucket-setup.js';
import type { MorayClient } from '../../lib/stor/moray/client.js';
import { META_BUCKET, MorayStore } from '../../lib/stor/moray/index.js';
import { migrationMetaKey, rowMigration, type Migration } from '../../lib/stor/moray/migrations.js';
import type { JsonObject } from '../../lib/stor/store.js';
import type { FakeMoray } from '../lib/fake-moray.js';
import { loadedMoray } from '../lib/sapi-212-dump.js';

const INSTANCES = BUCKETS.instances.name;
const FAST = { retryMinDelayMs: 10, retryMaxDelayMs: 50, sweepEveryMs: 0 };

function rows(fake: FakeMoray): JsonObject[] {
    return [...(fake.state.buckets.get(INSTANCES)?.rows.values() ?? [])].map((r) => JSON.parse(r.json) as JsonObject);
}

async function meta(raw: MorayClient, key: string): Promise<Record<string, unknown> | null> {
    const text = (await raw.getObject('sapi_meta', key))?.value.value;
    return typeof text === 'string' ? (JSON.parse(text) as Record<string, unknown>) : null;
}

async function until(cond: () => boolean): Promise<void> {
    while (!cond()) {
        await new Promise((r) => setTimeout(r, 10));
    }
}

t.test('two migrations run in order; a restart resumes at the saved cursor; a finished one is not run again', async (t) => {
    const { fake, raw } = await loadedMoray(t);
    const total = rows(fake).length;
    t.ok(total > 200, `2.1.2 instances loaded (${total})`);

    /** Every batch step, in the order they ran. */
    const steps: { n: number; cursor: number }[] = [];
    /** Rows migration 8 found without migration 7's mark. */
    let outOfOrder = 0;
    /** While set, migration 7's third batch (and later ones) wait for it; it fails when the first process stops. */
    let gate: { promise: Promise<void>; fail: () => void } | null = null;
    const tagging = (n: number, name: string): Migration => {
        const base = rowMigration({
            number: n,
            name,
            bucket: INSTANCES,
            version: BUCKETS.instances.version,
            pendingFields: () => ['type'],
            fix: (_def, v) => {
                if (n === 8 && v.m7 !== true) {
                    outOfOrder++;
                }
                return v[`m${n}`] === true ? null : { ...v, [`m${n}`]: true };
            },
        });
        return {
            ...base,
            step: async (ctx, cursor) => {
                steps.push({ n, cursor });
                if (gate && n === 7 && steps.filter((s) => s.n === 7).length > 2) {
                    await gate.promise;
                }
                return base.step(ctx, cursor);
            },
        };
    };
    // Listed out of order: the number decides.
    const migrations = [tagging(8, 'second'), tagging(7, 'first')];

    let fail!: () => void;
    const promise = new Promise<void>((_, reject) => {
        fail = () => reject(new Error('the first process stopped'));
    });
    promise.catch(() => undefined);
    gate = { promise, fail };
    const first = new MorayStore({ client: raw, migrations, backfillBatchSize: 50, ...FAST });
    await first.init();
    await until(() => steps.filter((s) => s.n === 7).length === 3);
    // The first two batches' writes are made while the third is read (pipelined): wait until both are saved.
    await until(() => first.initializer?.status()[INSTANCES]?.migrations[0]?.scanned === 100);
    const during = first.initializer?.status()[INSTANCES];
    t.equal(during?.phase, 'migrating', 'the bucket is being migrated');
    t.same(
        during?.migrations.map((m) => [m.number, m.name, m.state]),
        [
            [7, 'first', 'running'],
            [8, 'second', 'pending'],
        ],
        'its status shows each migration, in order',
    );
    t.equal(during?.migrations[0]?.scanned, 100, 'two batches done');
    t.ok(first.initializer?.pendingFields(INSTANCES).has('type'), "a running migration's fields are pending");
    const saved = await meta(raw, migrationMetaKey(7));
    t.equal(saved?.done, false, 'progress saved under the number');
    t.equal(saved?.cursor, during?.migrations[0]?.cursor, 'with the cursor of the last batch done');
    t.equal(await meta(raw, migrationMetaKey(8)), null, 'the second has not started');
    t.notOk(
        steps.some((s) => s.n === 8),
        'nor run a batch',
    );

    // "Restart": the first process stops in the middle of a batch; a new one resumes.
    await first.close();
    gate.fail();
    gate = null;
    const before = steps.length;
    const second = new MorayStore({ client: raw, migrations, backfillBatchSize: 50, ...FAST });
    t.teardown(() => second.close());
    await second.init();
    await second.initializer?.reindexDone();
    const ran = steps.slice(before);
    t.same(ran[0], { n: 7, cursor: saved?.cursor }, 'the first batch of the new run starts at the saved cursor');
    const last7 = ran.map((s) => s.n).lastIndexOf(7);
    const first8 = ran.map((s) => s.n).indexOf(8);
    t.ok(last7 >= 0 && first8 > last7, 'every batch of 7 before any of 8');
    t.equal(outOfOrder, 0, 'migration 8 found every row migrated by 7');
    t.ok(
        rows(fake).every((v) => v.m7 === true && v.m8 === true),
        'every row migrated by both',
    );
    t.same(
        second.initializer?.status()[INSTANCES]?.migrations.map((m) => [m.number, m.state]),
        [
            [7, 'done'],
            [8, 'done'],
        ],
    );
    t.equal((await meta(raw, migrationMetaKey(7)))?.done, true, '7 recorded as done');
    t.equal((await meta(raw, migrationMetaKey(8)))?.done, true, '8 recorded as done');
    t.equal(second.initializer?.isReady(INSTANCES), true);
    t.notOk(second.initializer?.pendingFields(INSTANCES).has('type'), 'nothing pending once done');

    // A third start runs neither again.
    const third = new MorayStore({ client: raw, migrations, backfillBatchSize: 50, ...FAST });
    t.teardown(() => third.close());
    const stepsBefore = steps.length;
    await third.init();
    await third.initializer?.reindexDone();
    t.equal(steps.length, stepsBefore, 'no batch run again');
    t.same(
        third.initializer?.status()[INSTANCES]?.migrations.map((m) => m.state),
        ['done', 'done'],
    );
});

t.test("the backfill progress an earlier SAPI-TS saved is migration 1's: resumed there, and saved forward", async (t) => {
    const { fake, raw } = await loadedMoray(t);
    // What an earlier SAPI-TS left after part of its backfill.
    await raw.createBucket(META_BUCKET.name, bucketConfig(META_BUCKET));
    const lastId = Number((await raw.findAll(INSTANCES, '(uuid=*)', { limit: 60, sort: { attribute: '_id', order: 'ASC' } })).at(-1)?._id);
    const startedAt = new Date().toISOString();
    await raw.putObject('sapi_meta', backfillMetaKey(INSTANCES), {
        value: JSON.stringify({ version: BUCKETS.instances.version, lastId, done: false, scanned: 60, rewritten: 10, startedAt }),
    });
    const finds = fake.requestsOf('findObjects').length;
    const store = new MorayStore({ client: raw, backfillBatchSize: 50, ...FAST });
    t.teardown(() => store.close());
    await store.init();
    await store.initializer?.reindexDone();
    const resumed = fake
        .requestsOf('findObjects')
        .slice(finds)
        .map((r) => String(r.args[1]))
        .find((f) => f.includes('_id>='));
    t.match(resumed, new RegExp(`_id>=${lastId + 1}\\b`), 'migration 1 starts after the saved _id');
    const now = await meta(raw, migrationMetaKey(1));
    t.same({ done: now?.done, startedAt: now?.startedAt }, { done: true, startedAt }, 'saved under its number, as one run');
    t.equal((await meta(raw, backfillMetaKey(INSTANCES)))?.done, true, 'and the old key kept up to date');
    const s = store.initializer?.status()[INSTANCES];
    t.same(
        s?.migrations.map((m) => [m.number, m.state]),
        [[1, 'done']],
    );
    t.ok((s?.backfill?.scanned ?? 0) > 60, 'the backfill status counts both runs');
    t.equal(store.initializer?.isBackfilled(INSTANCES), true);
});
