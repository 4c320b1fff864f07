// The embedded store's JSON fast path for ListInstances answers exactly
// what the generic serializer would: index mirrors, the migration marker
// and (v1) `type` removed, everything else as stored.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { serializeInstance } from '../../lib/endpoints/common.js';
import { withIndexes } from '../../lib/model/instance-records.js';
import type { Instance } from '../../lib/model/types.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('paged and streamed lists match serializeInstance, v1 and v2', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const records: Instance[] = [
        { uuid: randomUUID(), service_uuid: svc.uuid, type: 'vm' },
        { uuid: randomUUID(), service_uuid: svc.uuid, type: 'vm', params: { server_uuid: randomUUID(), image_uuid: randomUUID(), ram: 1024 } },
        {
            uuid: randomUUID(),
            service_uuid: svc.uuid,
            type: 'vm',
            metadata: { 'user-script': '#!/bin/sh', n: null, deep: { a: [1, { b: 'é' }] } },
            manifests: { m: randomUUID() },
        },
        // a record migrated by 2.1.2's SetMode carries `exists: true`
        { uuid: randomUUID(), service_uuid: svc.uuid, type: 'vm', exists: true, master: true, params: { image_uuid: randomUUID() } },
    ];
    for (const r of records) {
        await h.store.put('sapi_instances', withIndexes(r));
    }
    const stored = records.map((r) => withIndexes(r));
    for (const v2 of [true, false]) {
        const version = v2 ? '~2' : '~1';
        const want = stored.map((r) => serializeInstance(r, v2));
        const streamed = await h.call('GET', `/instances?service_uuid=${svc.uuid}`, { version });
        t.equal(streamed.headers.get('transfer-encoding'), 'chunked');
        t.same(streamed.body, want, `streamed, ${version}`);
        t.same(
            streamed.body.map((i: Record<string, unknown>) => Object.keys(i).sort()),
            want.map((i) => Object.keys(i).sort()),
            `no extra keys, ${version}`,
        );
        const paged = await h.call('GET', `/instances?service_uuid=${svc.uuid}&limit=10`, { version });
        const byUuid = (a: { uuid: string }, b: { uuid: string }): number => (a.uuid < b.uuid ? -1 : 1);
        t.same(paged.body, [...want].sort(byUuid as never), `paged, ${version}`);
        t.equal(paged.headers.get('x-joyent-resource-count'), '4');
        t.ok(paged.headers.get('content-length'), 'a page has a content length');
    }
});
