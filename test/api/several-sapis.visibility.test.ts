// Two SAPI processes on one Moray: a write acknowledged by one is in every
// answer of the other (GetConfig, GET, lists) that starts once the
// documented bound (one second) has passed after the acknowledgement,
// deletes included, even though the other had just read, and cached, the
// old values. The bound itself is checked with a fake clock in
// several-sapis.bound.test.ts; here each check is made once the bound has
// certainly passed (the reads start later than ack + bound + a margin).

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { SHARED_STORE_REVALIDATE_MS } from '../../lib/model/config-cache.js';
import { withIndexes } from '../../lib/model/instance-records.js';
import type { Instance } from '../../lib/model/types.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { startFakeCnapi } from '../lib/fake-cnapi.js';
import { startFakeImgapi } from '../lib/fake-imgapi.js';
import { startFakeMoray } from '../lib/fake-moray.js';
import { OWNER, sapiOnMoray, sleep, type SapiProcess } from './several-sapis.lib.js';

/** Past the bound, with room for the request to reach the other process. */
const PAST_BOUND_MS = SHARED_STORE_REVALIDATE_MS + 150;

t.test('a write through one SAPI is seen by the other within the bound', async (t) => {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const imgapi = await startFakeImgapi();
    t.teardown(() => imgapi.close());
    const cnapi = await startFakeCnapi({ imgapi: { url: imgapi.url } });
    t.teardown(() => cnapi.close());
    const config = { cnapi: { url: cnapi.url }, imgapi: { url: imgapi.url } };
    const a = await sapiOnMoray(t, { name: 'a', moray, config });
    const b = await sapiOnMoray(t, { name: 'b', moray, config });
    await a.start();
    await b.start();

    // The tree, written through A.
    const man = await a.call('POST', '/manifests', { body: { name: 'registrar', path: '/opt/registrar.json', template: '{{{X}}}' } });
    t.equal(man.status, 200, man.text);
    const app = await a.call('POST', '/applications', {
        body: { name: 'sdc', owner_uuid: OWNER, metadata: { X: '1' }, manifests: { registrar: man.body.uuid } },
    });
    t.equal(app.status, 200, app.text);
    const image = imgapi.addImage({ name: 'vm-agent', version: '1.0.0' }).uuid;
    const svc = await a.call('POST', '/services', {
        body: { name: 'vm-agent', application_uuid: app.body.uuid, type: 'agent', params: { image_uuid: image }, metadata: { S: '1' } },
        version: '~2',
    });
    t.equal(svc.status, 200, svc.text);
    // An agent instance on a server CNAPI does not know (its delete then only removes the record),
    // written straight into Moray as another writer would.
    const inst: Instance = {
        uuid: randomUUID(),
        service_uuid: svc.body.uuid,
        type: 'agent',
        params: { server_uuid: randomUUID(), image_uuid: image },
        metadata: { I: '1' },
    };
    const direct = new MorayStore({ connect: { host: moray.host, port: moray.port } });
    await direct.init();
    t.teardown(() => direct.close());
    await direct.put('sapi_instances', withIndexes(inst));

    const config_ = async (s: SapiProcess, etag?: string) => s.call('GET', `/configs/${inst.uuid}`, etag ? { headers: { 'if-none-match': `"${etag}"` } } : {});
    const list = async (s: SapiProcess) => s.call('GET', `/instances?service_uuid=${svc.body.uuid as string}`, { version: '~2' });

    // B reads everything (its caches now hold the old values).
    const first = await config_(b);
    t.equal(first.status, 200, first.text);
    t.equal(first.body.metadata.X, '1');
    const etag0 = String(first.headers.get('etag')).replace(/"/g, '');
    t.equal((await b.call('GET', `/applications/${app.body.uuid as string}`)).body.metadata.X, '1');
    t.equal((await list(b)).body.length, 1);
    t.equal((await config_(b, etag0)).status, 304, 'B answers 304 while nothing changed');

    await t.test('an application update', async (t) => {
        const up = await a.call('PUT', `/applications/${app.body.uuid as string}`, { body: { action: 'update', metadata: { X: '2' } } });
        t.equal(up.status, 200, up.text);
        await sleep(PAST_BOUND_MS);
        const got = await config_(b, etag0);
        t.equal(got.status, 200, 'the 304 tag no longer matches');
        t.equal(got.body.metadata.X, '2', 'GetConfig on B has the new value');
        t.equal((await b.call('GET', `/applications/${app.body.uuid as string}`)).body.metadata.X, '2', 'GET on B');
        const apps = await b.call('GET', '/applications');
        t.equal(apps.body.find((x: { uuid: string }) => x.uuid === app.body.uuid)?.metadata.X, '2', 'the list on B');
    });

    await t.test('a service update', async (t) => {
        t.equal((await config_(b)).body.metadata.S, '1');
        const up = await a.call('PUT', `/services/${svc.body.uuid as string}`, { body: { action: 'update', metadata: { S: '2' } } });
        t.equal(up.status, 200, up.text);
        await sleep(PAST_BOUND_MS);
        t.equal((await config_(b)).body.metadata.S, '2', 'GetConfig on B');
        t.equal((await b.call('GET', `/services/${svc.body.uuid as string}`)).body.metadata.S, '2', 'GET on B');
    });

    await t.test('an instance update', async (t) => {
        t.equal((await config_(b)).body.metadata.I, '1');
        const up = await a.call('PUT', `/instances/${inst.uuid}`, { body: { action: 'update', metadata: { I: '2' } } });
        t.equal(up.status, 200, up.text);
        await sleep(PAST_BOUND_MS);
        t.equal((await config_(b)).body.metadata.I, '2', 'GetConfig on B');
        t.equal((await b.call('GET', `/instances/${inst.uuid}`)).body.metadata.I, '2', 'GET on B');
        t.equal((await list(b)).body[0]?.metadata.I, '2', 'the list on B');
    });

    await t.test('a delete', async (t) => {
        t.equal((await config_(b)).status, 200);
        const del = await a.call('DELETE', `/instances/${inst.uuid}`);
        t.equal(del.status, 204, del.text);
        await sleep(PAST_BOUND_MS);
        t.equal((await config_(b)).status, 404, 'GetConfig on B: gone');
        t.equal((await b.call('GET', `/instances/${inst.uuid}`)).status, 404, 'GET on B: gone');
        t.same((await list(b)).body, [], 'the list on B: empty');
    });

    // The deletes above were seen through tombstones: a document a healthy change feed vouches for is otherwise kept longer than the bound.
    const polls = moray.requestsOf('findObjects').filter((r) => r.args[0] === 'sapi_tombstones' && /^\(_mtime>=\d+\)$/.test(String(r.args[1])));
    t.ok(polls.length > 0, 'the SAPIs poll the change feed');
});
