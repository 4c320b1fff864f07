// The service on the Moray backend: full mode on Moray with the embedded
// store as local cache (GetConfig from the cache while Moray is down,
// writes 503), and SetMode proto → full migrating into Moray.

import t from 'tap';

import { startFakeMoray } from '../lib/fake-moray.js';
import { anApplication, anInstance, aManifest, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('full mode on moray: CRUD, then GetConfig from the local cache while moray is down', async (t) => {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const h = await startSapi({
        viaCreateStore: true,
        config: {
            mode: 'full',
            store: { backend: 'moray', path: `${process.env.TMPDIR ?? '/tmp'}/sapi-moray-${process.pid}-${Date.now()}.sqlite` },
            moray: { host: moray.host, port: moray.port },
        },
    });
    t.teardown(h.close);
    const ping = await h.call('GET', '/ping');
    t.equal(ping.status, 200);
    t.match(ping.body.storType, /Moray/);
    const man = await aManifest(h);
    const app = await anApplication(h, { metadata: { A: 1 }, manifests: { registrar: man.uuid } });
    // An agent instance recorded the way an agent's postinstall does (v1: record only).
    const svc = await aService(h, app.uuid, { name: 'vm-agent', type: 'agent', params: { image_uuid: '2b3f4a8e-2b48-4b5e-9d6a-0f1e2d3c4b5a' } });
    const inst = (await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, params: { server_uuid: '2b3f4a8e-2b48-4b5e-9d6a-0f1e2d3c4b5b' } } }))
        .body;
    t.ok(inst.uuid);
    const upd = await h.call('PUT', `/instances/${inst.uuid}`, { body: { metadata: { B: 2 } } });
    t.equal(upd.status, 200);
    const found = await h.call('GET', `/instances?server_uuid=2b3f4a8e-2b48-4b5e-9d6a-0f1e2d3c4b5b&limit=10`, { version: '~2' });
    t.same(
        found.body.map((i: { uuid: string }) => i.uuid),
        [inst.uuid],
        'indexed search on moray',
    );
    const before = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(before.status, 200);

    await moray.stop();
    const during = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(during.status, 200, 'GetConfig answers from the local cache');
    t.same(during.body, before.body);
    t.equal(during.headers.get('etag'), before.headers.get('etag'));
    const write = await h.call('PUT', `/instances/${inst.uuid}`, { body: { metadata: { C: 3 } } });
    t.equal(write.status, 503, 'writes fail clearly');
    t.equal(write.body.code, 'StoreUnavailable');
    const create = await h.call('POST', '/applications', { body: { name: 'x', owner_uuid: app.owner_uuid } });
    t.equal(create.status, 503);

    await moray.start();
    let ok = false;
    // Until the client has reconnected (tap's timeout bounds the wait).
    while (!ok) {
        ok = (await h.call('PUT', `/instances/${inst.uuid}`, { body: { metadata: { C: 3 } } })).status === 200;
        if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(ok, 'writes work again once moray is back');
    const after = await h.call('GET', `/instances/${inst.uuid}`);
    t.same(after.body.metadata, { B: 2, C: 3 });
});

t.test('SetMode full migrates the embedded store into moray, idempotently', async (t) => {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const config = {
        store: { backend: 'moray', path: `${process.env.TMPDIR ?? '/tmp'}/sapi-mig-${process.pid}-${Date.now()}.sqlite` },
        moray: { host: moray.host, port: moray.port },
    };
    const h = await startSapi({ viaCreateStore: true, config });
    t.teardown(h.close);
    t.equal((await h.call('GET', '/mode')).body, 'proto');
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const insts = [];
    for (let i = 0; i < 25; i++) {
        insts.push((await anInstance(h, svc.uuid)).uuid);
    }
    const r = await h.call('POST', '/mode?mode=full');
    t.equal(r.status, 204);
    t.equal((await h.call('GET', '/mode')).body, 'full');
    t.match((await h.call('GET', '/ping')).body.storType, /Moray/);
    const list = await h.call('GET', `/instances?service_uuid=${svc.uuid}`);
    t.same(list.body.map((i: { uuid: string }) => i.uuid).sort(), insts.sort(), 'every instance now read from moray');
    const again = await h.call('POST', '/mode?mode=full');
    t.equal(again.status, 204, 'already full: no-op');
    const created = await h.call('POST', '/applications', { body: { name: 'manta', owner_uuid: app.owner_uuid } });
    t.equal(created.status, 200, 'writes go to moray');
});
