// Manifests: create/list/get/delete, version default and check, post_cmd_linux stored, a 404 with a body for a missing one, no delete while in use, 409 for a duplicate uuid.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const BASE = { name: 'registrar', path: '/opt/smartdc/registrar/etc/config.json', template: '{{{REGISTRAR}}}' };

t.test('a minimal manifest gets version "1.0.0" and nothing else', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('POST', '/manifests', { body: BASE });
    t.equal(r.status, 200);
    t.strictSame(r.body, { uuid: r.body.uuid, ...BASE, version: '1.0.0' });
    t.strictSame((await h.call('GET', `/manifests/${r.body.uuid}`)).body, r.body);
});

t.test('every accepted field is stored, post_cmd_linux included; a JSON template is kept verbatim', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    const body = {
        uuid,
        name: 'config-agent',
        path: '/opt/smartdc/agents/etc/config-agent.json',
        template: { a: [1, 'two', { three: null }] },
        post_cmd: '/usr/sbin/svcadm restart config-agent',
        post_cmd_linux: 'systemctl restart config-agent',
        version: '2.3.4',
        master: true,
        bogus: 1,
    };
    const r = await h.call('POST', '/manifests', { body });
    t.equal(r.status, 200);
    const expected: Record<string, unknown> = { ...body };
    delete expected.bogus;
    t.strictSame(r.body, expected);
    t.strictSame((await h.call('GET', `/manifests/${uuid}`)).body, expected);
});

t.test('create errors: missing keys in name, path, template order; bad version; bad uuid', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const post = (body: Record<string, unknown>) => h.call('POST', '/manifests', { body });
    isError(t, await post({}), 409, 'MissingParameter', 'missing required keys: name, path, template');
    isError(t, await post({ path: '/x' }), 409, 'MissingParameter', 'missing required keys: name, template');
    isError(t, await post({ name: 'x', path: '/x' }), 409, 'MissingParameter', 'missing required keys: template');
    isError(t, await post({ ...BASE, version: 'one' }), 409, 'InvalidArgument', 'invalid version');
    isError(t, await post({ ...BASE, uuid: '../sapi_applications/x' }), 409, 'InvalidArgument', 'uuid must be a UUID');
    isError(t, await post({ ...BASE, name: 5 }), 409, 'InvalidArgument', 'name must be string');
    isError(t, await post({ ...BASE, post_cmd: ['x'] }), 409, 'InvalidArgument', 'post_cmd must be string');
    t.strictSame((await h.call('GET', '/manifests')).body, [], 'nothing was written');
});

t.test('ListManifests lists all in creation order; names are not unique', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    t.strictSame((await h.call('GET', '/manifests')).body, []);
    const a = (await h.call('POST', '/manifests', { body: BASE })).body;
    const b = (await h.call('POST', '/manifests', { body: BASE })).body;
    t.not(a.uuid, b.uuid);
    const r = await h.call('GET', '/manifests');
    t.equal(r.status, 200);
    t.strictSame(r.body, [a, b]);
});

t.test('GetManifest / DeleteManifest: 404 no such manifest with a body; delete answers 204', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const missing = randomUUID();
    isError(t, await h.call('GET', `/manifests/${missing}`), 404, 'ResourceNotFound', `no such manifest: ${missing}`);
    isError(t, await h.call('DELETE', `/manifests/${missing}`), 404, 'ResourceNotFound', `no such manifest: ${missing}`);
    const m = (await h.call('POST', '/manifests', { body: BASE })).body;
    const r = await h.call('DELETE', `/manifests/${m.uuid}`);
    t.equal(r.status, 204);
    t.equal(r.text, '');
    t.equal((await h.call('GET', `/manifests/${m.uuid}`)).status, 404);
});

t.test('a manifest in use by an application, service or instance is not deleted', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const m = (await h.call('POST', '/manifests', { body: BASE })).body;
    const app = await anApplication(h, { manifests: { registrar: m.uuid } });
    isError(t, await h.call('DELETE', `/manifests/${m.uuid}`), 409, 'InvalidArgument', `manifest is in use by application ${app.uuid}`);

    const app2 = await anApplication(h);
    const svc = await aService(h, app2.uuid, { manifests: { r: m.uuid } });
    t.equal((await h.call('PUT', `/applications/${app.uuid}`, { body: { action: 'delete', manifests: { registrar: true } } })).status, 200);
    isError(t, await h.call('DELETE', `/manifests/${m.uuid}`), 409, 'InvalidArgument', `manifest is in use by service ${svc.uuid}`);
    t.equal((await h.call('PUT', `/services/${svc.uuid}`, { body: { action: 'delete', manifests: { r: 1 } } })).status, 200);

    const inst = await anInstance(h, svc.uuid, { manifests: { r: m.uuid } });
    isError(t, await h.call('DELETE', `/manifests/${m.uuid}`), 409, 'InvalidArgument', `manifest is in use by instance ${inst.uuid}`);
    t.equal((await h.call('GET', `/manifests/${m.uuid}`)).status, 200, 'still there');

    t.equal((await h.call('PUT', `/instances/${inst.uuid}`, { body: { action: 'delete', manifests: { r: 1 } } })).status, 200);
    t.equal((await h.call('DELETE', `/manifests/${m.uuid}`)).status, 204, 'unreferenced → deleted');
});

t.test('a duplicate manifest uuid is 409 and the first manifest is untouched', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    const first = (await h.call('POST', '/manifests', { body: { ...BASE, uuid } })).body;
    isError(t, await h.call('POST', '/manifests', { body: { ...BASE, uuid, name: 'x' } }), 409, 'InvalidArgument', `manifest already exists: ${uuid}`);
    t.strictSame((await h.call('GET', `/manifests/${uuid}`)).body, first);
});
