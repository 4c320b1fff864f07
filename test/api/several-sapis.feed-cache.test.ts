// GetConfig's cache with a change feed (what lib/stor/moray/feed.ts tells
// it), with a fake clock: while the feed's last successful poll began less
// than the bound ago, what was read after its chain began is answered from
// without reading the store again, and a change the feed tells drops it; when
// polls stop, the bound after each read applies again at once; what the feed
// cannot see (a delete by a SAPI that writes no tombstones) is answered no
// longer than the fallback after its read.

import t from 'tap';

import { SHARED_STORE_REVALIDATE_MS } from '../../lib/model/config-cache.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { isSapiError, rejection } from '../lib/model-ctx.js';
import { cacheWorld } from './several-sapis.lib.js';

const BOUND = SHARED_STORE_REVALIDATE_MS;
const FALLBACK = 10 * BOUND;

t.test('a healthy feed: answered past the bound without reads, until the feed tells a change', async (t) => {
    const w = await cacheWorld(t, { fallbackMs: FALLBACK });
    w.poll(0);
    const uuid = await w.inst();
    const before = (await w.cache.get(w.ctx, uuid, false)).etag;
    w.counting.reads.clear();
    for (let k = 1; k <= 5; k++) {
        w.clock.now = k * BOUND;
        w.poll(0);
        t.equal((await w.cache.get(w.ctx, uuid, false)).etag, before, `at ${k} bounds: answered`);
    }
    t.same([...w.counting.reads.entries()], [], 'nothing read from the store');

    for (const [what, bucket, key, change] of [
        ['application', BUCKET_OF.application, w.app, (v: JsonObject) => ({ ...v, metadata: { A: 2 } })],
        ['instance', BUCKET_OF.instance, uuid, (v: JsonObject) => ({ ...v, metadata: { I: 2 } })],
    ] as const) {
        const prev = (await w.cache.get(w.ctx, uuid, false)).etag;
        await w.otherWrite(bucket, key, change);
        t.equal(w.cache.lookup(uuid, false)?.etag, prev, `${what} written by another process: answered until the feed tells it`);
        w.cache.changed(bucket, key);
        t.equal(w.cache.lookup(uuid, false), null, `${what}: told by the feed, dropped`);
        const got = (await w.cache.get(w.ctx, uuid, false)).etag;
        t.equal(got, await w.fresh(uuid), `${what}: assembled again with the change`);
        t.not(got, prev);
    }
});

t.test('kept sources are covered by the feed too', async (t) => {
    const w = await cacheWorld(t, { fallbackMs: FALLBACK });
    w.poll(0);
    const a = await w.inst();
    await w.cache.get(w.ctx, a, false);
    w.clock.now = 3 * BOUND;
    w.poll(0);
    const b = await w.inst();
    w.counting.reads.clear();
    await w.cache.get(w.ctx, b, false);
    t.equal(w.counting.reads.get(BUCKET_OF.instance), 1, 'the new instance is read');
    t.equal(w.counting.reads.get(BUCKET_OF.application) ?? 0, 0, 'the application, read 3 bounds ago, is not');
});

t.test('the feed stalls: the bound after each read applies again at once', async (t) => {
    const w = await cacheWorld(t, { fallbackMs: FALLBACK });
    w.poll(0);
    const uuid = await w.inst();
    const before = (await w.cache.get(w.ctx, uuid, false)).etag;
    w.clock.now = 2 * BOUND;
    w.poll(0);
    await w.otherWrite(BUCKET_OF.instance, uuid, (v) => ({ ...v, metadata: { I: 3 } }));
    w.clock.now = 3 * BOUND - 1;
    t.equal(w.cache.lookup(uuid, false)?.etag, before, 'the last poll began less than the bound ago: answered');
    w.clock.now = 3 * BOUND;
    t.equal(w.cache.lookup(uuid, false), null, 'no poll for a bound: not answered');
    const got = (await w.cache.get(w.ctx, uuid, false)).etag;
    t.equal(got, await w.fresh(uuid), 'read again, with the change');
    w.clock.now = 4 * BOUND;
    t.equal(w.cache.lookup(uuid, false), null, 'still stalled: a bound after its read, not answered');
});

t.test('what was read before the chain began is not covered by it', async (t) => {
    const w = await cacheWorld(t, { fallbackMs: FALLBACK });
    const uuid = await w.inst();
    await w.cache.get(w.ctx, uuid, false); // read at 0, no feed yet
    w.clock.now = BOUND / 2;
    w.poll(BOUND / 2); // the first poll of a chain
    w.clock.now = BOUND;
    w.poll(BOUND / 2);
    t.equal(w.cache.lookup(uuid, false), null, 'read before the chain: the bound applies');
    await w.cache.get(w.ctx, uuid, false);
    w.clock.now = 3 * BOUND;
    w.poll(BOUND / 2);
    t.not(w.cache.lookup(uuid, false), null, 'read again within the chain: covered');
    w.poll(3 * BOUND); // a new chain (the feed started afresh)
    t.equal(w.cache.lookup(uuid, false), null, 'a new chain: what was read before it is not covered');
});

t.test('a delete the feed cannot see (no tombstone): answered no longer than the fallback', async (t) => {
    const w = await cacheWorld(t, { fallbackMs: FALLBACK });
    w.poll(0);
    const uuid = await w.inst();
    await w.cache.get(w.ctx, uuid, false); // read at 0
    await w.raw.del(BUCKET_OF.instance, uuid); // as SAPI 2.1.2 deletes: no tombstone, never told
    for (let now = BOUND; now < FALLBACK; now += BOUND) {
        w.clock.now = now;
        w.poll(0);
    }
    t.not(w.cache.lookup(uuid, false), null, 'within the fallback: still answered');
    w.clock.now = FALLBACK;
    w.poll(0);
    t.equal(w.cache.lookup(uuid, false), null, 'at the fallback: not answered');
    isSapiError(t, await rejection(w.cache.get(w.ctx, uuid, false)), 404, 'ResourceNotFound', `no such instance: ${uuid}`);
});
