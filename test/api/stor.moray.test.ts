// The store contract, run against the Moray backend: over the Moray protocol
// to fake-moray, or to a real Moray when MORAY_TEST_HOST (and
// MORAY_TEST_PORT, default 2020) are set.

import t from 'tap';

import { ALL_BUCKETS } from '../../lib/stor/buckets.js';
import { bucketConfig } from '../../lib/stor/moray/buckets-init.js';
import { MorayStore, META_BUCKET } from '../../lib/stor/moray/index.js';
import { eq } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';
import { storeContract } from '../lib/store-contract.js';

const realHost = process.env.MORAY_TEST_HOST;
let fake: FakeMoray | null = null;
let target: { host: string; port: number };
if (realHost) {
    target = { host: realHost, port: Number(process.env.MORAY_TEST_PORT ?? 2020) };
} else {
    fake = await startFakeMoray();
    target = { host: fake.host, port: fake.port };
    t.teardown(() => fake?.close());
}

async function makeStore(): Promise<MorayStore> {
    const store = new MorayStore({ connect: { ...target }, retryMinDelayMs: 10, retryMaxDelayMs: 200 });
    await store.init();
    return store;
}

t.test(`MorayStore (${realHost ? `moray at ${realHost}` : 'fake-moray'})`, async (t) => {
    storeContract(t, makeStore, { nulInIndexValues: !realHost });
});

t.test('buckets are set up from buckets.ts', { skip: realHost ? 'needs fake-moray' : false }, async (t) => {
    const store = await makeStore();
    t.teardown(() => store.close());
    const buckets = (fake as FakeMoray).state.buckets;
    for (const def of [...ALL_BUCKETS, META_BUCKET]) {
        const b = buckets.get(def.name);
        t.ok(b, `${def.name} exists`);
        t.same(b?.index, bucketConfig(def).index, `${def.name} indexes`);
        t.equal(b?.options.version, def.version, `${def.name} version`);
    }
    // These buckets exist already (earlier tests made them): the start-up sweep
    // of rows changed since the last one may still run, but nothing else.
    const phases = Object.values(store.initializer?.status() ?? {}).map((s) => s.phase);
    t.ok(
        phases.every((p) => p === 'ready' || p === 'sweeping'),
        `nothing to reindex or backfill in new buckets (${phases.join(', ')})`,
    );
    await store.initializer?.reindexDone();
    t.equal(store.initializer?.isReady(), true, 'ready once swept');
    t.equal((fake as FakeMoray).requestsOf('reindexObjects').length, 0, 'no reindex');
});

t.test('filter values reach Moray escaped', { skip: realHost ? 'needs fake-moray' : false }, async (t) => {
    const store = await makeStore();
    t.teardown(() => store.close());
    const f = fake as FakeMoray;
    const before = f.requestsOf('findObjects').length;
    await store.find('sapi_instances', eq('type', '*)(uuid=*'), { limit: 10 });
    const sent = f
        .requestsOf('findObjects')
        .slice(before)
        .map((r) => r.args[1]);
    t.same(sent, ['(type=\\2a\\29\\28uuid=\\2a)'], 'one findObjects with an escaped value');
    const opts = f.requestsOf('findObjects').at(-1)?.args[2] as { sort?: unknown; limit?: number };
    t.same(opts.sort, { attribute: 'uuid', order: 'ASC' }, 'pages sort by uuid');
    t.equal(opts.limit, 10, 'pages pass the limit');
});
