// GetInstancePayload: the VMAPI createVm payload — merged params, forced identity and brand, filtered customer_metadata, rewritten networks.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { anApplication, anInstance, aService, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const NET = 'a4e6ea5f-3d6e-4c3b-9c5a-0b6e5b4e2c11';

t.test('a vm payload: params merged app → service → instance, with owner, uuid and brand forced', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const image = randomUUID();
    const cn = randomUUID();
    const app = await anApplication(h, {
        params: { ram: 256, brand: 'joyent', billing_id: 'app', owner_uuid: randomUUID(), uuid: randomUUID() },
    });
    const svc = await aService(h, app.uuid, { params: { ram: 1024, image_uuid: image, tags: { smartdc_role: 'imgapi' } } });
    const inst = await anInstance(h, svc.uuid, { params: { alias: 'imgapi0', server_uuid: cn, customer_metadata: { dropped: 1 } } });

    const r = await h.call('GET', `/instances/${inst.uuid}/payload`);
    t.equal(r.status, 200);
    t.strictSame(r.body, {
        ram: 1024,
        brand: 'joyent-minimal',
        billing_id: 'app',
        owner_uuid: OWNER,
        uuid: inst.uuid,
        image_uuid: image,
        tags: { smartdc_role: 'imgapi' },
        alias: 'imgapi0',
        server_uuid: cn,
        customer_metadata: {},
    });
});

t.test('customer_metadata: only the SAPI URL keys, user-script, assets-ip and pass_vmapi_metadata_keys, when truthy', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const cn = randomUUID();
    const app = await anApplication(h, {
        metadata: {
            SAPI_URL: 'http://sapi',
            sapi_url: 'http://sapi-lower',
            'SAPI-URL': 'http://sapi-dash',
            'sapi-url': 'http://sapi-dash-lower',
            'user-script': '#!/bin/sh',
            'assets-ip': '',
            PRIVATE: 'not passed',
            EXTRA: 'passed',
            FALSY: 0,
            pass_vmapi_metadata_keys: ['EXTRA', 'FALSY', 'SERVER_UUID', 'ZONE_UUID', 'MISSING'],
        },
        params: { server_uuid: cn },
    });
    const svc = await aService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid);
    const r = await h.call('GET', `/instances/${inst.uuid}/payload`);
    t.equal(r.status, 200);
    t.strictSame(r.body.customer_metadata, {
        SAPI_URL: 'http://sapi',
        sapi_url: 'http://sapi-lower',
        'SAPI-URL': 'http://sapi-dash',
        'sapi-url': 'http://sapi-dash-lower',
        'user-script': '#!/bin/sh',
        EXTRA: 'passed',
        SERVER_UUID: cn,
        ZONE_UUID: inst.uuid,
    });
    t.notOk('metadata' in r.body, 'metadata itself is not part of the payload');
});

t.test('pass_vmapi_metadata_keys that is not an array passes nothing extra', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h, { metadata: { EXTRA: 'x', pass_vmapi_metadata_keys: 'EXTRA' } });
    const svc = await aService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid);
    t.strictSame((await h.call('GET', `/instances/${inst.uuid}/payload`)).body.customer_metadata, {});
});

t.test('networks: lower-case uuid strings → {uuid}, other strings → {name}, objects unchanged', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid, {
        params: { networks: ['admin', NET, NET.toUpperCase(), { uuid: NET, primary: true }, { name: 'external' }] },
    });
    const inst = await anInstance(h, svc.uuid);
    const r = await h.call('GET', `/instances/${inst.uuid}/payload`);
    t.strictSame(r.body.networks, [{ name: 'admin' }, { uuid: NET }, { name: NET.toUpperCase() }, { uuid: NET, primary: true }, { name: 'external' }]);
});

t.test('a missing instance is 404 no such instance', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    isError(t, await h.call('GET', `/instances/${uuid}/payload`), 404, 'ResourceNotFound', `no such instance: ${uuid}`);
});
