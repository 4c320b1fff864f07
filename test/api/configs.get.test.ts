// GetConfigs: the document config-agent renders from — merged metadata and manifests, SAPI's uuids, 404s for broken trees.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import { isError } from '../lib/api-assert.js';
import { aManifest, anAgentService, anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const SAPI_SERVER = '44454c4c-3700-1039-8050-b2c04f544432';

t.test('metadata merges application → service → instance; SAPI adds the uuids and drops user-script', async (t) => {
    const h = await startSapi({ config: { server_uuid: SAPI_SERVER } });
    t.teardown(h.close);
    const app = await anApplication(h, {
        metadata: { A: 'app', SHARED: 'app', 'user-script': '#!/bin/sh\necho hi', NESTED: { x: 1, y: 2 } },
    });
    const svc = await aService(h, app.uuid, { metadata: { SHARED: 'svc', S: 1, NESTED: { z: 3 } } });
    const inst = await anInstance(h, svc.uuid, { metadata: { SHARED: 'inst', I: true } });

    const r = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(r.status, 200);
    t.match(r.headers.get('content-type'), /^application\/json/);
    t.strictSame(r.body, {
        manifests: [],
        metadata: {
            A: 'app',
            SHARED: 'inst',
            NESTED: { z: 3 },
            S: 1,
            I: true,
            SERVER_UUID: SAPI_SERVER,
            ZONE_UUID: inst.uuid,
            INSTANCE_UUID: inst.uuid,
        },
    });
});

t.test('SERVER_UUID is the merged params.server_uuid when there is one', async (t) => {
    const h = await startSapi({ config: { server_uuid: SAPI_SERVER } });
    t.teardown(h.close);
    const cn = randomUUID();
    const app = await anApplication(h, { params: { server_uuid: randomUUID() } });
    const svc = await aService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid, { params: { server_uuid: cn } });
    t.equal((await h.call('GET', `/configs/${inst.uuid}`)).body.metadata.SERVER_UUID, cn, 'the instance wins over the application');
});

t.test('manifests are the full objects, one per merged-map entry, in merged key order', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const m1 = await aManifest(h, { name: 'one' });
    const m2 = await aManifest(h, { name: 'two', post_cmd: 'svcadm restart x', version: '1.2.3' });
    const m3 = await aManifest(h, { name: 'three', template: { json: true } });
    const app = await anApplication(h, { manifests: { one: m1.uuid, two: m2.uuid } });
    const svc = await aService(h, app.uuid, { manifests: { two: m3.uuid, three: m1.uuid } });
    const inst = await anInstance(h, svc.uuid, { manifests: { four: m2.uuid } });

    const r = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(r.status, 200);
    // merged map: {one: m1, two: m3 (service overrides), three: m1, four: m2}
    t.strictSame(r.body.manifests, [m1, m3, m1, m2], 'a uuid reachable under two names appears twice');
});

t.test('agent instances have a config too', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h, { metadata: { DC: 'east' } });
    const svc = await anAgentService(h, app.uuid);
    const uuid = randomUUID();
    const cn = randomUUID();
    await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid, params: { server_uuid: cn, image_uuid: randomUUID() } } });
    const r = await h.call('GET', `/configs/${uuid}`);
    t.equal(r.status, 200);
    t.strictSame(r.body, { manifests: [], metadata: { DC: 'east', SERVER_UUID: cn, ZONE_UUID: uuid, INSTANCE_UUID: uuid } });
});

t.test('a missing instance, an orphan and a dangling manifest are 404s naming what is missing (D1d); orphans stay readable and deletable', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const missing = randomUUID();
    isError(t, await h.call('GET', `/configs/${missing}`), 404, 'ResourceNotFound', `no such instance: ${missing}`);

    // Trees left broken by 2.1.2 data: written straight into the store.
    const m = await aManifest(h);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const dangling = await anInstance(h, svc.uuid, { manifests: { gone: m.uuid } });
    await h.store.del(BUCKETS.manifests.name, m.uuid);
    isError(t, await h.call('GET', `/configs/${dangling.uuid}`), 404, 'ResourceNotFound', `no such manifest: ${m.uuid}`);

    const orphanSvc = await aService(h, app.uuid);
    const orphan = await anInstance(h, orphanSvc.uuid);
    await h.store.del(BUCKETS.services.name, orphanSvc.uuid);
    isError(t, await h.call('GET', `/configs/${orphan.uuid}`), 404, 'ResourceNotFound', `no such service: ${orphanSvc.uuid}`);
    isError(t, await h.call('GET', `/instances/${orphan.uuid}/payload`), 404, 'ResourceNotFound', `no such service: ${orphanSvc.uuid}`);
    t.equal((await h.call('GET', `/instances/${orphan.uuid}`)).status, 200, 'the orphan instance is readable');
    t.equal((await h.call('DELETE', `/instances/${orphan.uuid}`)).status, 204, 'and deletable');

    const app2 = await anApplication(h);
    const svc2 = await aService(h, app2.uuid);
    const inst2 = await anInstance(h, svc2.uuid);
    await h.store.del(BUCKETS.applications.name, app2.uuid);
    isError(t, await h.call('GET', `/configs/${inst2.uuid}`), 404, 'ResourceNotFound', `no such application: ${app2.uuid}`);
    t.equal((await h.call('DELETE', `/instances/${inst2.uuid}`)).status, 204);
    t.equal((await h.call('DELETE', `/services/${svc2.uuid}`)).status, 204, 'an orphan service is deletable');
});
