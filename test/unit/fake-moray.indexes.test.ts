// The Moray test server's indexes (test/lib/fake-moray.ts) select rows, and
// must never change what a find returns: every filter, sort, limit and
// offset below gives the same records (values, _id, _etag, _mtime, _count,
// order) and the same errors with the indexes as with a scan of every row
// (`useIndexes = false`), on rows written, rewritten, deleted and stamped
// directly, and during and after a bucket's reindex.

import t, { type Test } from 'tap';

import { connectMoray, MorayRequestError, type MorayClient } from '../../lib/stor/moray/client.js';
import type { MorayBatchRequest } from '../../lib/stor/moray/rpc.js';
import type { IndexDef } from '../../lib/stor/buckets.js';
import { startFakeMoray, type FakeMoray, type FakeMorayOptions } from '../lib/fake-moray.js';

interface Env {
    fake: FakeMoray;
    client: MorayClient;
}

async function setup(t: Test, opts: FakeMorayOptions = {}): Promise<Env> {
    const fake = await startFakeMoray(opts);
    t.teardown(() => fake.close());
    const client = await connectMoray({ host: fake.host, port: fake.port });
    t.teardown(() => client.close());
    return { fake, client };
}

const INDEX: Record<string, IndexDef> = {
    s: { type: 'string' },
    n: { type: 'number' },
    b: { type: 'boolean' },
    u: { type: 'string', unique: true },
};

/** 240 rows of varied values (NULLs, arrays, numbers as text), then updates, deletes and batches. */
async function fill(client: MorayClient): Promise<void> {
    await client.createBucket('idx', { index: INDEX });
    for (let i = 0; i < 200; i++) {
        const value: Record<string, unknown> = { s: `a${i % 7}`, n: i % 5, u: `u${i}`, x: i % 2 === 0 ? 'even' : 'odd' };
        if (i % 11 === 0) {
            delete value.s;
        }
        if (i % 13 === 0) {
            value.n = null;
        }
        if (i % 3 === 0) {
            value.b = i % 2 === 0;
        }
        if (i % 17 === 0) {
            value.s = ['a1', 'z'];
        }
        if (i % 19 === 0) {
            value.n = String(i % 5);
        }
        await client.putObject('idx', `k${i}`, value);
    }
    // Rewrites (moved to the end of the write order, _id kept), deletes, and batches of both.
    for (let i = 0; i < 200; i += 9) {
        await client.putObject('idx', `k${i}`, { s: `a${(i + 1) % 7}`, n: (i + 2) % 5, u: `u${i}`, x: 'rewritten' });
    }
    for (let i = 5; i < 200; i += 23) {
        await client.delObject('idx', `k${i}`);
    }
    const ops: MorayBatchRequest[] = [];
    for (let i = 200; i < 240; i++) {
        ops.push({ operation: 'put', bucket: 'idx', key: `k${i}`, value: { s: `a${i % 3}`, n: i % 4, u: `u${i}` } });
    }
    ops.push({ operation: 'delete', bucket: 'idx', key: 'k7' });
    await client.batch(ops);
}

const FILTERS = [
    '(s=a1)',
    '(s=a1,z)',
    '(s=missing)',
    '(&(s=a1)(n>=2))',
    '(&(s=a1)(x=odd))',
    '(|(s=a1)(s=a2))',
    '(|(s=a1)(n=3))',
    '(&(|(s=a1)(s=a3))(n<=2))',
    '(u=u42)',
    '(u>=u5)',
    '(&(u>=u1)(!(u=u1)))',
    '(_key=k12)',
    '(_key=nope)',
    '(_id>=100)',
    '(_id<=30)',
    '(&(_id>=50)(_id<=80))',
    '(&(s=a2)(_id>=40))',
    '(n>=3)',
    '(n<=2)',
    '(n=2)',
    '(n=abc)',
    '(&(n>=2)(n<=3))',
    '(b=true)',
    '(b=false)',
    '(s=*)',
    '(u=*)',
    '(!(s=a1))',
    '(s=a*)',
    '(&(s=a*)(n=1))',
    '(|(_key=k1)(u=u2))',
    '(_etag=*)',
];

const OPTIONS: Record<string, unknown>[] = [
    {},
    { sort: { attribute: '_id', order: 'ASC' } },
    { sort: { attribute: '_id', order: 'DESC' }, limit: 9 },
    { sort: { attribute: '_mtime', order: 'ASC' } },
    { sort: { attribute: 'u', order: 'ASC' }, limit: 7, offset: 3 },
    { sort: { attribute: 's', order: 'DESC' } },
    {
        sort: [
            { attribute: 's', order: 'ASC' },
            { attribute: 'n', order: 'DESC' },
        ],
    },
    { limit: 5 },
    { sort: { attribute: 'n', order: 'ASC' }, offset: 10 },
];

/** What a find answers: the records as sent, or the error's name. */
async function answer(client: MorayClient, bucket: string, filter: string, opts: Record<string, unknown>): Promise<unknown> {
    try {
        return await client.findAll(bucket, filter, opts);
    } catch (err) {
        return err instanceof MorayRequestError ? err.morayName : String(err);
    }
}

/** Every filter and option set gives the same answer with the indexes as with a scan. */
async function sameAsScan(t: Test, env: Env, bucket: string, filters: string[], label: string, options = OPTIONS): Promise<void> {
    let differing = 0;
    for (const filter of filters) {
        for (const opts of options) {
            env.fake.useIndexes = false;
            const scanned = await answer(env.client, bucket, filter, opts);
            env.fake.useIndexes = true;
            const indexed = await answer(env.client, bucket, filter, opts);
            if (JSON.stringify(indexed) !== JSON.stringify(scanned)) {
                differing++;
                t.strictSame(indexed, scanned, `${label}: ${filter} ${JSON.stringify(opts)}`);
            }
        }
    }
    t.equal(differing, 0, `${label}: ${filters.length} filters × ${options.length} option sets answer as a scan does`);
}

for (const tieOrder of ['write', 'reverse'] as const) {
    t.test(`index-served finds answer as a scan (tied rows in ${tieOrder} order)`, async (t) => {
        const env = await setup(t);
        env.fake.tieOrder = tieOrder;
        await fill(env.client);
        const some = await env.client.findAll('idx', '(s=a1)', {});
        t.ok(some.length > 10, 'the filters select rows');
        t.equal(some[0]?._count, some.length, 'with their count');
        // In reverse tie order, the option sets that leave ties (no sort, or a sort on a column rows share).
        const options =
            tieOrder === 'write' ? OPTIONS : OPTIONS.filter((o) => !['_id', 'u'].includes(String((o.sort as { attribute?: string } | undefined)?.attribute)));
        await sameAsScan(t, env, 'idx', FILTERS, 'filled', options);
        const mtimes = (await env.client.findAll('idx', '(_id>=1)', { limit: 100_000 })).map((r) => Number(r._mtime)).sort((a, b) => a - b);
        const mid = mtimes[Math.floor(mtimes.length / 2)] as number;
        await sameAsScan(
            t,
            env,
            'idx',
            [`(_mtime>=${mid})`, `(_mtime<=${mid})`, `(&(_mtime>=${mid})(s=a1))`, `(_mtime=${mid})`],
            '_mtime',
            OPTIONS.slice(0, 5),
        );
    });
}

t.test('a find visits the rows its indexes give, not every row', async (t) => {
    const env = await setup(t);
    await fill(env.client);
    const visits = async (filter: string, opts: Record<string, unknown> = {}): Promise<number> => {
        const before = env.fake.rowsVisited;
        await env.client.findAll('idx', filter, opts);
        return env.fake.rowsVisited - before;
    };
    const all = (await env.client.findAll('idx', '(_id>=1)', { limit: 100_000 })).length;
    t.ok(all > 200, `${all} rows`);
    t.equal(await visits('(u=u42)'), 1, 'a unique equality: one row');
    t.equal(await visits('(_key=k12)'), 1, 'a key: one row');
    const a1 = (await env.client.findAll('idx', '(s=a1)', {}))[0]?._count ?? 0;
    t.equal(await visits('(&(s=a1)(x=odd))'), a1, 'an and: the rows of its indexed equality');
    t.equal(await visits('(|(u=u1)(u=u2)(u=u3))'), 3, 'an or of equalities: their rows');
    t.ok((await visits('(_id>=230)', { sort: { attribute: '_id', order: 'ASC' }, limit: 5 })) < 20, 'an _id range: the rows after it');
    const newest = (await env.client.findAll('idx', '(_id>=1)', { sort: { attribute: '_mtime', order: 'DESC' }, limit: 1 }))[0];
    t.ok((await visits(`(_mtime>=${Number(newest?._mtime)})`, { sort: { attribute: '_mtime', order: 'ASC' } })) < all / 2, 'an _mtime range: the rows since');
    t.equal(await visits('(!(s=a1))'), all, 'a not scans every row');
    env.fake.useIndexes = false;
    t.equal(await visits('(u=u42)'), all, 'without the indexes, every row');
});

t.test('rows set directly (as tests stamp _mtime) are found through the indexes', async (t) => {
    const env = await setup(t);
    await fill(env.client);
    const rows = env.fake.state.buckets.get('idx')?.rows;
    for (const key of ['k1', 'k2', 'k3']) {
        const r = rows?.get(key);
        if (r) {
            rows?.set(key, { ...r, _mtime: 42 });
        }
    }
    t.same(
        (await env.client.findAll('idx', '(_mtime<=42)', { sort: { attribute: '_id', order: 'ASC' } })).map((r) => r.key),
        ['k1', 'k2', 'k3'],
        'the stamped rows',
    );
    await sameAsScan(t, env, 'idx', ['(_mtime<=42)', '(_mtime>=43)', '(s=a1)'], 'stamped');
});

for (const exclude of [false, true]) {
    t.test(`during and after a reindex (excludeReindexingFields ${exclude})`, async (t) => {
        const env = await setup(t, { excludeReindexingFields: exclude });
        await fill(env.client);
        await env.client.updateBucket('idx', { index: { ...INDEX, x: { type: 'string' } }, options: { version: 2 } });
        await env.client.putObject('idx', 'k1', { s: 'a1', n: 1, u: 'u1', x: 'odd' });
        await env.client.reindexObjects('idx', 50);
        const during = ['(s=a1)', '(&(s=a1)(n>=2))', '(_id>=100)', '(x=odd)', '(&(x=even)(s=a1))', '(&(x>=e)(x<=f))', '(|(x=odd)(s=a2))', '(x=*)'];
        const options = OPTIONS.slice(0, 5);
        await sameAsScan(t, env, 'idx', during, 'reindexing', options);
        while ((await env.client.reindexObjects('idx', 100)).processed > 0) {
            // until done
        }
        await sameAsScan(t, env, 'idx', during, 'reindexed', options);
        t.ok((await env.client.findAll('idx', '(x=odd)', {})).length > 50, 'the new index finds the rows');
    });
}

t.test('a unique index is checked through the index, within and across a batch', async (t) => {
    const { client } = await setup(t);
    await fill(client);
    const err = await client.putObject('idx', 'new', { u: 'u3' }).then(
        () => null,
        (e: unknown) => (e instanceof MorayRequestError ? e.morayName : String(e)),
    );
    t.match(err, /Unique/, 'a value another row holds');
    // k3 gives up u3 and k4 takes it, in one batch: allowed, as each statement is checked in turn.
    await client.batch([
        { operation: 'put', bucket: 'idx', key: 'k3', value: { u: 'u3b' } },
        { operation: 'put', bucket: 'idx', key: 'k4', value: { u: 'u3' } },
    ]);
    t.same(
        (await client.findAll('idx', '(u=u3)', {})).map((r) => r.key),
        ['k4'],
        'moved',
    );
    const failed = await client
        .batch([
            { operation: 'put', bucket: 'idx', key: 'k8', value: { u: 'fresh' } },
            { operation: 'put', bucket: 'idx', key: 'k9', value: { u: 'fresh' } },
        ])
        .then(
            () => null,
            (e: unknown) => (e instanceof MorayRequestError ? e.morayName : String(e)),
        );
    t.match(failed, /Unique/, 'two rows of one batch');
    t.same(await client.findAll('idx', '(u=fresh)', {}), [], 'the failed batch wrote nothing');
    t.same(
        (await client.findAll('idx', '(u=u8)', {})).map((r) => r.key),
        ['k8'],
        'k8 as it was',
    );
});
