// ListInstances `unindexed=true`: the instances whose stored record lacks
// (or has stale) top-level index copies of params.server_uuid and
// params.image_uuid, as SAPI 2.1.2 wrote every record. Works in both views
// (without the v1 implicit type=vm), combines with the other filters, is
// streamed in chunks and refuses paging; a rewrite through the API takes a
// record off the list.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { withIndexes } from '../../lib/model/instance-records.js';
import type { Instance } from '../../lib/model/types.js';
import { BUCKETS, staleIndexCopies } from '../../lib/stor/buckets.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';
import { applications, instances, instanceView, services } from '../lib/sapi-212-dump.js';

const sorted = (uuids: string[]): string[] => [...uuids].sort();
const uuidsOf = (body: { uuid: string }[]): string[] => sorted(body.map((i) => i.uuid));

/** A SAPI whose store holds the 2.1.2 dump exactly as 2.1.2 wrote it (no index copies). */
async function withDump(): Promise<Harness> {
    const h = await startSapi();
    for (const a of applications()) await h.store.put('sapi_applications', a);
    for (const s of services()) await h.store.put('sapi_services', s);
    for (const i of instances()) await h.store.put('sapi_instances', i);
    return h;
}

t.test('2.1.2 records: which are unindexed, in both views, with other filters', async (t) => {
    const h = await withDump();
    t.teardown(h.close);
    const all = instances();
    const stale = all.filter((i) => staleIndexCopies(BUCKETS.instances, i).length > 0);
    t.equal(all.length, 290);
    t.equal(stale.length, 243, 'every instance with params.server_uuid or params.image_uuid lacks its copies');

    const list = async (qs: string, version?: string): Promise<{ uuid: string }[]> => {
        const r = await h.call('GET', `/instances?${qs}`, version ? { version } : {});
        t.equal(r.status, 200, `${qs} (${version ?? 'v1'})`, { body: r.text });
        t.equal(r.headers.get('x-joyent-resource-count'), String(r.body.length), `count header, ${qs} (${version ?? 'v1'})`);
        return r.body;
    };

    const v2 = await list('unindexed=true', '~2');
    t.same(uuidsOf(v2), uuidsOf(stale), 'v2: exactly the records without index copies');
    const byUuid = new Map(stale.map((i) => [i.uuid, i]));
    t.same(
        v2.map((i) => i),
        v2.map((i) => instanceView(byUuid.get(i.uuid) as JsonObject, true)),
        'answered in the v2 view (no index copies, no exists marker)',
    );
    const v1 = await list('unindexed=1');
    t.same(uuidsOf(v1), uuidsOf(stale), 'v1: agents too (no implicit type=vm for this search)');
    t.notOk(
        v1.some((i) => 'type' in i),
        'v1 view: no type',
    );

    t.equal((await list('unindexed=true&type=agent', '~2')).length, stale.filter((i) => i.type === 'agent').length, 'type filter');
    t.equal((await list('unindexed=true&type=vm')).length, stale.filter((i) => i.type === 'vm').length, 'explicit type in v1');
    const someServer = (stale[0] as Instance).params?.server_uuid as string;
    t.same(
        uuidsOf(await list(`unindexed=true&server_uuid=${someServer}`, '~2')),
        sorted(stale.filter((i) => (i.params as Record<string, unknown>).server_uuid === someServer).map((i) => i.uuid)),
        'server_uuid filter (read from params)',
    );
    const svc = (stale[0] as Instance).service_uuid;
    t.same(
        uuidsOf(await list(`unindexed=true&service_uuid=${svc}`)),
        sorted(stale.filter((i) => i.service_uuid === svc).map((i) => i.uuid)),
        'service_uuid filter',
    );

    t.equal((await list('unindexed=false', '~2')).length, 290, 'false: no filter');
    t.equal((await list('unindexed=', '~2')).length, 290, 'empty: no filter');
    t.equal((await list('unindexed=0')).length, all.filter((i) => i.type === 'vm').length, 'no filter: the v1 view keeps its type=vm');

    const paged = await h.call('GET', '/instances?unindexed=true&limit=10', { version: '~2' });
    t.equal(paged.status, 409, 'paging is refused');
    t.equal(paged.body.code, 'InvalidArgument');
    t.match(paged.body.message, /unindexed=true cannot be paged/);
    const marker = await h.call('GET', `/instances?unindexed=true&marker=${randomUUID()}`, { version: '~2' });
    t.equal(marker.status, 409, 'a marker too');
    t.equal((await list('unindexed=true&limit=&marker=', '~2')).length, 243, 'empty paging values are ignored');
    const bad = await h.call('GET', '/instances?unindexed=yes', { version: '~2' });
    t.equal(bad.status, 409, 'a malformed flag is a 409');

    // Any update rewrites the record, and the server writes its copies.
    const fix = stale[0] as Instance;
    const put = await h.call('PUT', `/instances/${fix.uuid}`, { body: { params: { server_uuid: fix.params?.server_uuid } }, version: '~2' });
    t.equal(put.status, 200);
    const stored = (await h.store.get('sapi_instances', fix.uuid))?.value as Record<string, unknown>;
    t.same(staleIndexCopies(BUCKETS.instances, stored), [], 'the rewritten record has its copies');
    const after = await list('unindexed=true', '~2');
    t.equal(after.length, 242);
    t.notOk(
        after.some((i) => i.uuid === fix.uuid),
        'and is no longer listed',
    );
});

t.test('stale copies count, copies written by the model do not; chunks of any size', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = (await aService(h, app.uuid)).uuid as string;
    const want: string[] = [];
    // More than one store chunk (1000), indexed and unindexed interleaved.
    for (let n = 0; n < 2500; n++) {
        const inst: Instance = { uuid: randomUUID(), service_uuid: svc, type: 'vm', params: { server_uuid: randomUUID(), image_uuid: randomUUID() } };
        if (n % 2 === 0) {
            await h.store.put('sapi_instances', withIndexes(inst));
        } else if (n % 3 === 0) {
            // a stale copy: params moved on, the top-level copy did not
            await h.store.put('sapi_instances', { ...withIndexes(inst), server_uuid: randomUUID() });
            want.push(inst.uuid);
        } else {
            await h.store.put('sapi_instances', inst);
            want.push(inst.uuid);
        }
    }
    // A record with no params has nothing to copy: it is indexed as it is.
    await h.store.put('sapi_instances', { uuid: randomUUID(), service_uuid: svc, type: 'vm' });
    // A top-level value without a params value: listed exactly when the
    // store's own rule (staleIndexCopies) calls it stale.
    const orphan = { uuid: randomUUID(), service_uuid: svc, type: 'vm', params: {}, image_uuid: randomUUID() };
    await h.store.put('sapi_instances', orphan);
    if (staleIndexCopies(BUCKETS.instances, orphan).length > 0) want.push(orphan.uuid);

    const r = await h.call('GET', '/instances?unindexed=true', { version: '~2' });
    t.equal(r.status, 200);
    t.equal(r.headers.get('transfer-encoding'), 'chunked', 'streamed');
    t.equal(r.headers.get('x-joyent-resource-count'), String(want.length));
    t.same(uuidsOf(r.body), sorted(want));
    t.notOk(
        r.body.some((i: Record<string, unknown>) => 'server_uuid' in i || 'image_uuid' in i),
        'the view never shows the copies',
    );
});
