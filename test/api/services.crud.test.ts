// Services: create/list/get/delete shapes and statuses, type defaults, and every create error in order.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, anApplication, anInstance, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('a service created without type is a vm service; v2 shows type, v1 hides it', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);

    const r = await h.call('POST', '/services', { body: { name: 'imgapi', application_uuid: app.uuid }, version: '~2' });
    t.equal(r.status, 200);
    t.strictSame(r.body, { uuid: r.body.uuid, name: 'imgapi', application_uuid: app.uuid, type: 'vm' });

    const v1 = await h.call('GET', `/services/${r.body.uuid}`);
    t.equal(v1.status, 200);
    t.strictSame(v1.body, { uuid: r.body.uuid, name: 'imgapi', application_uuid: app.uuid }, 'v1 view omits type');

    const falsy = await h.call('POST', '/services', { body: { name: 'x', application_uuid: app.uuid, type: '' }, version: '~2' });
    t.equal(falsy.status, 200);
    t.equal(falsy.body.type, 'vm', 'a falsy type means vm');
});

t.test('every accepted field is returned; unknown fields are not', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const m = await aManifest(h);
    const uuid = randomUUID();
    const body = {
        uuid,
        name: 'vm-agent',
        application_uuid: app.uuid,
        type: 'agent',
        params: { tags: { smartdc_role: 'vm-agent' } },
        metadata: { SERVICE_NAME: 'vm-agent' },
        manifests: { agent: m.uuid },
        master: true,
        owner_uuid: OWNER,
        bogus: 1,
    };
    const r = await h.call('POST', '/services', { body, version: '~2' });
    t.equal(r.status, 200);
    const expected: Record<string, unknown> = { ...body };
    delete expected.owner_uuid;
    delete expected.bogus;
    t.strictSame(r.body, expected);
    t.strictSame((await h.call('GET', `/services/${uuid}`, { version: '~2' })).body, expected);
});

t.test('ListServices filters by name, application_uuid and type (AND-ed)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const a1 = await anApplication(h);
    const a2 = await anApplication(h, { name: 'manta' });
    const mk = async (name: string, app: string, type: string): Promise<Record<string, unknown>> =>
        (await h.call('POST', '/services', { body: { name, application_uuid: app, type }, version: '~2' })).body;
    const s1 = await mk('imgapi', a1.uuid, 'vm');
    const s2 = await mk('vm-agent', a1.uuid, 'agent');
    const s3 = await mk('imgapi', a2.uuid, 'vm');

    const list = async (q: string): Promise<unknown> => (await h.call('GET', `/services${q}`, { version: '~2' })).body;
    t.strictSame(await list(''), [s1, s2, s3]);
    t.strictSame(await list('?name=imgapi'), [s1, s3]);
    t.strictSame(await list(`?application_uuid=${a1.uuid}`), [s1, s2]);
    t.strictSame(await list('?type=agent'), [s2]);
    t.strictSame(await list(`?name=imgapi&application_uuid=${a2.uuid}`), [s3]);
    t.strictSame(await list('?name=&type='), [s1, s2, s3], 'empty filter values are ignored');
    t.strictSame(await list('?name=nope'), []);
});

t.test('GetService of an unknown uuid is 404 no such service', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    isError(t, await h.call('GET', `/services/${uuid}`), 404, 'ResourceNotFound', `no such service: ${uuid}`);
});

t.test('create errors come in 2.1.2 order: missing keys, type, manifests, application', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const noApp = randomUUID();
    const noManifest = randomUUID();
    const post = (body: Record<string, unknown>) => h.call('POST', '/services', { body, version: '~2' });

    isError(t, await post({}), 409, 'MissingParameter', 'missing required keys: name, application_uuid');
    isError(t, await post({ application_uuid: app.uuid }), 409, 'MissingParameter', 'missing required keys: name');
    isError(t, await post({ name: 'x', type: 'bogus' }), 409, 'MissingParameter', 'missing required keys: application_uuid');
    // D1c: a bad type is a client mistake (409), checked before the parent exists.
    isError(t, await post({ name: 'x', application_uuid: noApp, type: 'bogus' }), 409, 'InvalidArgument', 'service type is invalid: bogus');
    // D1a: an unknown manifest is 404 no such manifest, checked before the application.
    isError(t, await post({ name: 'x', application_uuid: noApp, manifests: { m: noManifest } }), 404, 'ResourceNotFound', `no such manifest: ${noManifest}`);
    isError(t, await post({ name: 'x', application_uuid: noApp }), 404, 'ResourceNotFound', `no such application: ${noApp}`);
    isError(t, await post({ name: 'x', application_uuid: 'sdc' }), 409, 'InvalidArgument', 'application_uuid must be a UUID');
    isError(t, await post({ name: 'x', application_uuid: app.uuid, uuid: 'nope' }), 409, 'InvalidArgument', 'uuid must be a UUID');
    isError(t, await post({ name: 5, application_uuid: app.uuid }), 409, 'InvalidArgument', 'name must be string');
    isError(t, await post({ name: 'x', application_uuid: app.uuid, params: 'x' }), 409, 'InvalidArgument', 'params must be object');
    isError(t, await post({ name: 'x', application_uuid: app.uuid, type: 5 }), 409, 'InvalidArgument');
    t.strictSame((await h.call('GET', '/services', { version: '~2' })).body, [], 'nothing was written');
});

t.test('a duplicate service uuid is 409, the first service untouched', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const uuid = randomUUID();
    const first = await h.call('POST', '/services', { body: { uuid, name: 'a', application_uuid: app.uuid }, version: '~2' });
    t.equal(first.status, 200);
    const dup = await h.call('POST', '/services', { body: { uuid, name: 'b', application_uuid: app.uuid, type: 'agent' }, version: '~2' });
    isError(t, dup, 409, 'InvalidArgument', `service already exists: ${uuid}`);
    t.strictSame((await h.call('GET', `/services/${uuid}`, { version: '~2' })).body, first.body);

    const same = await h.call('POST', '/services', { body: { name: 'a', application_uuid: app.uuid }, version: '~2' });
    t.equal(same.status, 200, 'the same name in the same application is allowed');
});

t.test('DeleteService answers 204; a missing one is 404 with a body', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = (await h.call('POST', '/services', { body: { name: 'a', application_uuid: app.uuid } })).body;
    const r = await h.call('DELETE', `/services/${svc.uuid}`);
    t.equal(r.status, 204);
    t.equal(r.text, '');
    isError(t, await h.call('GET', `/services/${svc.uuid}`), 404, 'ResourceNotFound', `no such service: ${svc.uuid}`);
    isError(t, await h.call('DELETE', `/services/${svc.uuid}`), 404, 'ResourceNotFound', `no such service: ${svc.uuid}`);
});

t.test('an application with services and a service with instances are not deleted', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = (await h.call('POST', '/services', { body: { name: 'a', application_uuid: app.uuid } })).body;
    const inst = await anInstance(h, svc.uuid);

    isError(t, await h.call('DELETE', `/applications/${app.uuid}`), 409, 'InvalidArgument', 'application has services');
    t.equal((await h.call('GET', `/applications/${app.uuid}`)).status, 200, 'the application is still there');
    isError(t, await h.call('DELETE', `/services/${svc.uuid}`), 409, 'InvalidArgument', 'service has instances');
    t.equal((await h.call('GET', `/services/${svc.uuid}`)).status, 200, 'the service is still there');

    t.equal((await h.call('DELETE', `/instances/${inst.uuid}`)).status, 204);
    t.equal((await h.call('DELETE', `/services/${svc.uuid}`)).status, 204, 'bottom-up deletes succeed');
    t.equal((await h.call('DELETE', `/applications/${app.uuid}`)).status, 204);
});
