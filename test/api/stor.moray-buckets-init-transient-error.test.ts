// Moray bucket setup keeps going through transient Moray errors (VMAPI's
// "bucket update fails transiently", "reindex fails transiently", "update
// removes an index"), and through Moray being down at start.
//
// Each injected failure is logged once, as a warning naming the step. A
// loaded machine may add warnings of its own (a reply slower than the
// client's request timeout is transient too), so the other warnings are
// only required to be transient, never counted.

import t, { type Test } from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import { bucketConfig, type InitLogger } from '../../lib/stor/moray/buckets-init.js';
import { connectMoray } from '../../lib/stor/moray/client.js';
import { StoreUnavailableError } from '../../lib/stor/errors.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { eq } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';

const INSTANCES = BUCKETS.instances.name;

interface Logged {
    level: string;
    msg: string;
    err?: unknown;
}

async function setup(t: Test): Promise<{ fake: FakeMoray; store: MorayStore; logged: Logged[] }> {
    const fake = await startFakeMoray();
    const logged: Logged[] = [];
    const at =
        (level: string) =>
        (fields: object, msg?: string): void =>
            void logged.push({ level, msg: msg ?? '', err: (fields as { err?: unknown }).err });
    const log: InitLogger = { info: at('info'), warn: at('warn'), error: at('error') };
    const store = new MorayStore({
        connect: { host: fake.host, port: fake.port, retry: { retries: 3, minTimeout: 20, maxTimeout: 100 } },
        log,
        retryMinDelayMs: 10,
        retryMaxDelayMs: 50,
        reindexBatchSize: 10,
    });
    t.teardown(async () => {
        await store.close();
        await fake.close();
    });
    return { fake, store, logged };
}

/** Warnings logged for the injected failures of Moray error `name` ("injected <name>"). */
function injected(logged: Logged[], name: string): Logged[] {
    return logged.filter((l) => l.level === 'warn' && l.err instanceof Error && l.err.message.includes(`injected ${name}`));
}

/** Every warning comes from a transient error (StoreUnavailableError). */
function allTransient(t: Test, logged: Logged[]): void {
    const warns = logged.filter((l) => l.level === 'warn');
    t.ok(
        warns.every((w) => w.err instanceof StoreUnavailableError),
        'every warning is a transient error (StoreUnavailableError)',
        { warnings: warns.map((w) => `${w.msg}: ${String(w.err)}`) },
    );
}

/** Put `n` instances in a version-0 instances bucket, as SAPI 2.1.2 did. */
async function legacyInstances(fake: FakeMoray, n: number, index?: Record<string, { type: string; unique?: boolean }>): Promise<void> {
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    try {
        await raw.createBucket(INSTANCES, {
            index: (index ?? {
                uuid: { type: 'string', unique: true },
                service_uuid: { type: 'string' },
                type: { type: 'string' },
            }) as never,
        });
        for (let i = 0; i < n; i++) {
            const uuid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
            await raw.putObject(INSTANCES, uuid, { uuid, type: 'vm', server_uuid: `server-${i % 2}` });
        }
    } finally {
        await raw.close();
    }
}

t.test('bucket creation fails transiently', async (t) => {
    const { fake, store, logged } = await setup(t);
    fake.failNext('getBucket', 'NoDatabasePeersError');
    fake.failNext('createBucket', 'NoDatabasePeersError', { count: 2 });
    await store.init();
    for (const def of Object.values(BUCKETS)) {
        t.equal(fake.state.buckets.get(def.name)?.options.version, def.version, `${def.name} created`);
    }
    const warns = injected(logged, 'NoDatabasePeersError');
    t.equal(warns.length, 3, 'each failure logged as a warning');
    allTransient(t, logged);
    t.match(warns[0]?.msg, /set up bucket sapi_applications: moray error, will retry/, 'names the step');
    t.equal(await store.ping(), true, 'ready');
});

t.test('bucket update fails transiently', async (t) => {
    const { fake, store, logged } = await setup(t);
    await legacyInstances(fake, 5);
    fake.failNext('updateBucket', 'NoDatabasePeersError', { count: 3 });
    await store.init();
    const b = fake.state.buckets.get(INSTANCES);
    t.equal(b?.options.version, 1, 'updated in the end');
    t.same(b?.index, bucketConfig(BUCKETS.instances).index, 'with our indexes');
    const warns = injected(logged, 'NoDatabasePeersError');
    t.equal(warns.length, 3, 'three warnings, one per failure');
    t.ok(
        warns.every((w) => /set up bucket sapi_instances: moray error, will retry/.test(w.msg)),
        'naming the step',
    );
    allTransient(t, logged);
    await store.initializer?.reindexDone();
    t.equal((await store.find(INSTANCES, eq('server_uuid', 'server-1'))).total, 2, 'rows found by the new index');
});

t.test('reindex fails transiently', async (t) => {
    const { fake, store, logged } = await setup(t);
    await legacyInstances(fake, 35);
    fake.failNext('reindexObjects', 'NoDatabasePeersError', { count: 2 });
    fake.failNext('reindexObjects', 'QueryTimeoutError');
    await store.init();
    await store.initializer?.reindexDone();
    const b = fake.state.buckets.get(INSTANCES);
    t.same(b?.reindexActive, {}, 'reindex complete');
    t.equal([...(b?.rows.values() ?? [])].filter((r) => r._rver !== 1).length, 0, 'every row reindexed');
    t.equal(store.initializer?.status()[INSTANCES]?.reindexed, 35, 'each row reindexed once');
    const warns = [...injected(logged, 'NoDatabasePeersError'), ...injected(logged, 'QueryTimeoutError')];
    t.equal(warns.length, 3, 'three warnings, one per failure');
    t.ok(
        warns.every((w) => /reindex bucket sapi_instances: moray error, will retry/.test(w.msg)),
        'naming the step',
    );
    allTransient(t, logged);
    t.equal(await store.count(INSTANCES, eq('server_uuid', 'server-0')), 18, 'searches use the new index');
    t.match(String(fake.requestsOf('findObjects').at(-1)?.args[1]), /server_uuid=server-0/, 'server-side, now that the reindex is complete');
});

t.test('update removes an index', async (t) => {
    const { fake, store } = await setup(t);
    await legacyInstances(fake, 3, {
        uuid: { type: 'string', unique: true },
        service_uuid: { type: 'string' },
        type: { type: 'string' },
        zonename: { type: 'string' },
    });
    await store.init();
    await store.initializer?.reindexDone();
    const b = fake.state.buckets.get(INSTANCES);
    t.same(b?.index, bucketConfig(BUCKETS.instances).index, 'only our indexes remain');
    t.notOk(
        [...(b?.rows.values() ?? [])].some((r) => 'zonename' in r.cols),
        'the dropped column is gone',
    );
    t.equal((await store.find(INSTANCES, eq('type', 'vm'))).total, 3, 'rows still found');
});

t.test('a non-transient error is logged as an error and retried', async (t) => {
    const { fake, store, logged } = await setup(t);
    fake.failNext('createBucket', 'InvalidBucketConfigError');
    await store.init();
    const errors = logged.filter((l) => l.level === 'error');
    t.equal(errors.length, 1, 'one error logged');
    t.match(errors[0]?.msg, /failed, will retry/, 'and retried');
    t.equal(store.initializer?.isReady(), true, 'set up in the end');
});

t.test('a bucket newer than ours is left alone; its missing indexes are not trusted', async (t) => {
    const { fake, store, logged } = await setup(t);
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    await raw.createBucket(INSTANCES, {
        index: { uuid: { type: 'string', unique: true }, service_uuid: { type: 'string' }, type: { type: 'string' } },
        options: { version: 7 },
    });
    await raw.putObject(INSTANCES, 'u1', { uuid: 'u1', type: 'vm', server_uuid: 's1' });
    await raw.close();
    await store.init();
    t.equal(fake.requestsOf('updateBucket').length, 0, 'not updated');
    t.ok(
        logged.some((l) => l.level === 'warn' && /newer than this SAPI/.test(l.msg)),
        'warned',
    );
    t.same([...(store.initializer?.pendingFields(INSTANCES) ?? [])].sort(), ['image_uuid', 'server_uuid'], 'pending');
    t.same(
        (await store.find(INSTANCES, eq('server_uuid', 's1'))).items.map((s) => s.value.uuid),
        ['u1'],
        'found by a field Moray does not index',
    );
});

t.test('Moray down at start: init gives up waiting, setup finishes once Moray is back', async (t) => {
    const { fake, store } = await setup(t);
    await fake.stop();
    const limited = new MorayStore({
        connect: { host: fake.host, port: fake.port, retry: { retries: 3, minTimeout: 20, maxTimeout: 100 } },
        initTimeoutMs: 300,
        retryMinDelayMs: 10,
        retryMaxDelayMs: 50,
    });
    t.teardown(() => limited.close());
    await t.rejects(limited.init(), StoreUnavailableError, 'init rejects after initTimeoutMs');
    t.equal(await limited.ping(), false, 'not ready');
    await t.rejects(limited.get(INSTANCES, 'x'), StoreUnavailableError, 'requests fail as unavailable');
    const setupOfStore = store.init();
    await fake.start();
    await limited.initializer?.setupDone();
    await setupOfStore;
    t.equal(await limited.ping(), true, 'ready once Moray is back');
    t.equal(await store.ping(), true, 'the other store too');
    t.ok(fake.state.buckets.has(INSTANCES), 'buckets created');
});
