// When Moray goes away, every store operation fails fast with
// StoreUnavailableError; when it comes back, the same store works again.
// Slow and failing replies map the same way; Moray's request errors do not.
// "Fast" and "timed out" are told by the error, not by a clock: an
// operation that waited for an answer ends with the request timeout's
// error ("no reply after N ms"), one refused at once with another.

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

/** A StoreUnavailableError that did not wait out the request timeout. */
const REFUSED = { constructor: StoreUnavailableError, message: /^(?![\s\S]*no reply after)/ };

t.test('Moray stopped: StoreUnavailableError, fast', async (t) => {
    await fake.stop();
    await t.rejects(store.get(INSTANCES, obj.uuid), REFUSED, 'get');
    await t.rejects(store.put(INSTANCES, { ...obj, type: 'x' }), REFUSED, 'put');
    await t.rejects(store.del(INSTANCES, obj.uuid), REFUSED, 'del');
    await t.rejects(store.find(INSTANCES, eq('service_uuid', 'svc')), REFUSED, 'find');
    await t.rejects(store.find(INSTANCES, ALL, { limit: 5 }), REFUSED, 'paged find');
    await t.rejects(store.count(INSTANCES, ALL), REFUSED, 'count');
    await t.rejects(store.batch([{ op: 'put', bucket: INSTANCES, value: obj }]), REFUSED, 'batch');
    await t.rejects(store.getMeta('mode'), REFUSED, 'getMeta');
    t.equal(await store.ping(), false, 'ping is false');
});

t.test('Moray back: the same store works again', async (t) => {
    await fake.start();
    // Until the client has reconnected (tap's timeout bounds the wait).
    const got = await (async () => {
        for (;;) {
            try {
                return await store.get(INSTANCES, obj.uuid);
            } catch (err) {
                t.ok(err instanceof StoreUnavailableError, 'unavailable until reconnected', { err: String(err) });
                await new Promise((r) => setTimeout(r, 50));
            }
        }
    })();
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
    // The reply would come (a late reply would succeed): the error is the request timeout's.
    const TIMED_OUT = { constructor: StoreUnavailableError, message: /no reply after 300 ms/ };
    await t.rejects(store.get(INSTANCES, obj.uuid), TIMED_OUT, 'get: after requestTimeoutMs, not after the reply');
    await t.rejects(store.find(INSTANCES, ALL), TIMED_OUT, 'find: after requestTimeoutMs, not after the reply');
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
