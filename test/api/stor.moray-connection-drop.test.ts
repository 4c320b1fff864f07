// When Moray goes away, every store operation fails fast with
// StoreUnavailableError; when it comes back, the same store works again.
// Slow and failing replies map the same way; Moray's request errors do not.

import t from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import { EtagConflictError, StoreError, StoreUnavailableError } from '../../lib/stor/errors.js';
import { MorayRequestError } from '../../lib/stor/moray/client.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { ALL, eq } from '../../lib/stor/store.js';
import { startFakeMoray } from '../lib/fake-moray.js';

const INSTANCES = BUCKETS.instances.name;

const fake = await startFakeMoray();
const store = new MorayStore({
    connect: {
        host: fake.host,
        port: fake.port,
        retry: { retries: 3, minTimeout: 20, maxTimeout: 100 },
        requestTimeoutMs: 300,
    },
    retryMinDelayMs: 10,
    retryMaxDelayMs: 50,
});
await store.init();
t.teardown(async () => {
    await store.close();
    await fake.close();
});

const obj = { uuid: 'c7a2c1f0-1f5e-4a51-9d5e-5f0b3c6b2f11', service_uuid: 'svc', type: 'vm' };
await store.put(INSTANCES, obj);

t.test('Moray stopped: StoreUnavailableError, fast', async (t) => {
    await fake.stop();
    const started = Date.now();
    await t.rejects(store.get(INSTANCES, obj.uuid), StoreUnavailableError, 'get');
    await t.rejects(store.put(INSTANCES, { ...obj, type: 'x' }), StoreUnavailableError, 'put');
    await t.rejects(store.del(INSTANCES, obj.uuid), StoreUnavailableError, 'del');
    await t.rejects(store.find(INSTANCES, eq('service_uuid', 'svc')), StoreUnavailableError, 'find');
    await t.rejects(store.find(INSTANCES, ALL, { limit: 5 }), StoreUnavailableError, 'paged find');
    await t.rejects(store.count(INSTANCES, ALL), StoreUnavailableError, 'count');
    await t.rejects(
        store.batch([{ op: 'put', bucket: INSTANCES, value: obj }]),
        StoreUnavailableError,
        'batch',
    );
    await t.rejects(store.getMeta('mode'), StoreUnavailableError, 'getMeta');
    t.equal(await store.ping(), false, 'ping is false');
    t.ok(Date.now() - started < 2000, 'all failed fast', { ms: Date.now() - started });
});

t.test('Moray back: the same store works again', async (t) => {
    await fake.start();
    const end = Date.now() + 10_000;
    let got = null;
    while (Date.now() < end) {
        try {
            got = await store.get(INSTANCES, obj.uuid);
            break;
        } catch (err) {
            t.ok(err instanceof StoreUnavailableError, 'unavailable until reconnected', { err: String(err) });
            await new Promise((r) => setTimeout(r, 50));
        }
    }
    t.same(got?.value, obj, 'reads work again, data intact');
    t.equal(await store.ping(), true, 'ping is true');
    t.equal((await store.find(INSTANCES, eq('service_uuid', 'svc'))).total, 1, 'finds work');
    await store.put(INSTANCES, { ...obj, type: 'agent' });
    t.equal((await store.get(INSTANCES, obj.uuid))?.value.type, 'agent', 'writes work');
});

t.test('slow replies time out as StoreUnavailableError', async (t) => {
    fake.latencyMs = 1000;
    t.teardown(() => {
        fake.latencyMs = 0;
    });
    const started = Date.now();
    await t.rejects(store.get(INSTANCES, obj.uuid), StoreUnavailableError, 'get');
    await t.rejects(store.find(INSTANCES, ALL), StoreUnavailableError, 'find');
    t.ok(Date.now() - started < 1500, 'after requestTimeoutMs, not after the reply');
    fake.latencyMs = 0;
    t.ok(await store.get(INSTANCES, obj.uuid), 'fine again once Moray is fast');
});

t.test('slow but in time is fine', async (t) => {
    fake.latencyMs = 100;
    t.teardown(() => {
        fake.latencyMs = 0;
    });
    t.ok(await store.get(INSTANCES, obj.uuid), 'get');
    t.equal(await store.count(INSTANCES, ALL), 1, 'count');
});

t.test('Moray error replies', async (t) => {
    fake.failNext('getObject', 'NoDatabasePeersError');
    await t.rejects(store.get(INSTANCES, obj.uuid), StoreUnavailableError, 'no database peers: unavailable');
    fake.failNext('findObjects', 'QueryTimeoutError');
    await t.rejects(store.find(INSTANCES, ALL), StoreUnavailableError, 'query timeout: unavailable');
    fake.failNext('putObject', 'EtagConflictError');
    await t.rejects(store.put(INSTANCES, obj), EtagConflictError, 'etag conflict maps to EtagConflictError');
    fake.failNext('findObjects', 'InvalidQueryError');
    const err = await store.find(INSTANCES, ALL).catch((e: unknown) => e);
    t.ok(err instanceof MorayRequestError && err.morayName === 'InvalidQueryError', 'a request error stays one');
    t.ok(err instanceof StoreError && !(err instanceof StoreUnavailableError), 'a StoreError, not "unavailable"');
    t.ok(await store.get(INSTANCES, obj.uuid), 'next request fine');
});
