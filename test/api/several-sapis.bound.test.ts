// The visibility bound of GetConfig on a store other SAPIs also write
// (Moray), with a fake clock: nothing read from the store is answered from
// once the bound has passed since the read began. Services, applications
// and manifests are kept and shared between documents within the bound (one
// read each per bound), and a document made from a kept one expires with it.

import t from 'tap';

import { SHARED_STORE_REVALIDATE_MS } from '../../lib/model/config-cache.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import { updateApplication } from '../../lib/model/applications.js';
import type { BucketName } from '../../lib/stor/buckets.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { isSapiError, rejection } from '../lib/model-ctx.js';
import { cacheWorld } from './several-sapis.lib.js';

const BOUND = SHARED_STORE_REVALIDATE_MS;

t.test('kept sources: read once per bound, however many documents use them', async (t) => {
    const w = await cacheWorld(t);
    const uuids = [await w.inst(), await w.inst(), await w.inst()];
    w.counting.reads.clear();
    for (const u of uuids) {
        await w.cache.get(w.ctx, u, false);
    }
    t.equal(w.counting.reads.get(BUCKET_OF.instance), 3, 'each instance read');
    t.equal(w.counting.reads.get(BUCKET_OF.application), 1, 'the application once');
    t.equal(w.counting.reads.get(BUCKET_OF.service), 1, 'the service once');
    t.equal(w.counting.reads.get(BUCKET_OF.manifest), 1, 'the manifest once');
    w.clock.now += BOUND;
    w.counting.reads.clear();
    await w.cache.get(w.ctx, uuids[0] as string, false);
    t.equal(w.counting.reads.get(BUCKET_OF.application), 1, 'read again once the bound has passed');
});

t.test('a document made from a kept source expires with that source, not a bound after its own assembly', async (t) => {
    const w = await cacheWorld(t);
    const first = await w.inst();
    await w.cache.get(w.ctx, first, false); // the application is read at 0
    w.clock.now = BOUND / 2;
    const second = await w.inst();
    const before = (await w.cache.get(w.ctx, second, false)).etag; // assembled at BOUND/2 from the application read at 0
    await w.otherWrite(BUCKET_OF.application, w.app, (v) => ({ ...v, metadata: { A: 2 } }));
    w.clock.now = BOUND - 1;
    t.equal(w.cache.lookup(second, false)?.etag, before, 'within the bound of the application read: answered');
    w.clock.now = BOUND;
    t.equal(w.cache.lookup(second, false), null, "at the bound of the application read: not answered, though the document's own assembly is younger");
    const after = (await w.cache.get(w.ctx, second, false)).etag;
    t.equal(after, await w.fresh(second), 'assembled again with the new application');
    t.not(after, before);
});

t.test('every change by another process is answered once the bound has passed', async (t) => {
    const w = await cacheWorld(t);
    const uuid = await w.inst();
    const changes: [string, BucketName, string, (v: JsonObject) => JsonObject][] = [
        ['service', BUCKET_OF.service, w.svc, (v) => ({ ...v, metadata: { S: 2 } })],
        ['manifest', BUCKET_OF.manifest, w.manifest, (v) => ({ ...v, template: 'changed' })],
        ['instance', BUCKET_OF.instance, uuid, (v) => ({ ...v, metadata: { I: 2 } })],
    ];
    for (const [what, bucket, key, change] of changes) {
        const before = (await w.cache.get(w.ctx, uuid, false)).etag;
        await w.otherWrite(bucket, key, change);
        w.clock.now += BOUND - 1;
        const mid = await w.cache.get(w.ctx, uuid, false);
        t.equal(mid.etag, before, `${what}: within the bound, the kept document may still answer`);
        w.clock.now += 1;
        const got = await w.cache.get(w.ctx, uuid, false);
        t.equal(got.etag, await w.fresh(uuid), `${what}: at the bound, the change is in the answer`);
        t.not(got.etag, before);
    }
});

t.test('deletes by another process: a 404 once the bound has passed', async (t) => {
    const w = await cacheWorld(t);
    const uuid = await w.inst();
    await w.cache.get(w.ctx, uuid, false);
    await w.raw.del(BUCKET_OF.manifest, w.manifest);
    w.clock.now += BOUND;
    isSapiError(t, await rejection(w.cache.get(w.ctx, uuid, false)), 404, 'ResourceNotFound', `no such manifest: ${w.manifest}`);
    await w.raw.del(BUCKET_OF.service, w.svc);
    w.clock.now += BOUND;
    isSapiError(t, await rejection(w.cache.get(w.ctx, uuid, false)), 404, 'ResourceNotFound', `no such service: ${w.svc}`);
    await w.raw.del(BUCKET_OF.instance, uuid);
    w.clock.now += BOUND;
    isSapiError(t, await rejection(w.cache.get(w.ctx, uuid, false)), 404, 'ResourceNotFound', `no such instance: ${uuid}`);
});

t.test("this process's own writes: a kept source is dropped at once", async (t) => {
    const w = await cacheWorld(t);
    const uuid = await w.inst();
    const before = (await w.cache.get(w.ctx, uuid, false)).etag;
    await updateApplication(w.ctx, w.app, { action: 'update', metadata: { A: 3 } });
    const other = await w.inst(); // another document of the same application, no time passed
    t.equal((await w.cache.get(w.ctx, other, false)).etag, await w.fresh(other), 'assembled from the new application');
    const again = (await w.cache.get(w.ctx, uuid, false)).etag;
    t.not(again, before, 'the first document too');
    t.equal(again, await w.fresh(uuid));
});
