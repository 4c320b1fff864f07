// Applications: create, list, get and delete succeed with 2.1.2's exact bodies and status codes.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { aManifest, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('a minimal application is exactly {uuid, name, owner_uuid} with a generated v4 uuid', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);

    const r = await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } });
    t.equal(r.status, 200, 'creates answer 200, not 201/204');
    t.match(r.headers.get('content-type'), /^application\/json/);
    t.match(r.body.uuid, UUID_V4);
    t.strictSame(r.body, { uuid: r.body.uuid, name: 'sdc', owner_uuid: OWNER }, 'absent fields are omitted, never null');

    const got = await h.call('GET', `/applications/${r.body.uuid}`);
    t.equal(got.status, 200);
    t.strictSame(got.body, r.body, 'GET returns the stored object');
});

t.test('every accepted field is stored and returned; unknown body fields are ignored', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const m = await aManifest(h);
    const uuid = randomUUID();
    const body = {
        uuid,
        name: 'manta',
        owner_uuid: OWNER,
        params: { ram: 1024, tags: { smartdc_role: 'x' } },
        metadata: { datacenter_name: 'us-east-1', PORT: 80 },
        metadata_schema: { type: 'object', properties: { datacenter_name: { type: 'string' } } },
        manifests: { registrar: m.uuid },
        master: true,
        not_a_field: 'dropped',
        type: 'vm',
    };
    const r = await h.call('POST', '/applications', { body });
    t.equal(r.status, 200);
    const expected: Record<string, unknown> = { ...body };
    delete expected.not_a_field;
    delete expected.type;
    t.strictSame(r.body, expected);
    t.strictSame((await h.call('GET', `/applications/${uuid}`)).body, expected);
});

t.test('ListApplications returns an array, filtered by name and owner_uuid; empty filters are ignored', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);

    const empty = await h.call('GET', '/applications');
    t.equal(empty.status, 200, 'no applications is 200 [] (not 404)');
    t.strictSame(empty.body, []);

    const other = randomUUID();
    const a = (await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } })).body;
    const b = (await h.call('POST', '/applications', { body: { name: 'manta', owner_uuid: OWNER } })).body;
    const c = (await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: other } })).body;

    t.strictSame((await h.call('GET', '/applications')).body, [a, b, c]);
    t.strictSame((await h.call('GET', '/applications?name=sdc')).body, [a, c]);
    t.strictSame((await h.call('GET', `/applications?owner_uuid=${other}`)).body, [c]);
    t.strictSame((await h.call('GET', `/applications?name=sdc&owner_uuid=${OWNER}`)).body, [a], 'filters are AND-ed');
    t.strictSame((await h.call('GET', '/applications?name=&owner_uuid=')).body, [a, b, c], 'empty values are ignored');
    t.strictSame((await h.call('GET', '/applications?name=nope')).body, []);
});

t.test('GetApplication of an unknown uuid is 404 ResourceNotFound naming it', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    const r = await h.call('GET', `/applications/${uuid}`);
    t.equal(r.status, 404);
    t.strictSame(r.body, { code: 'ResourceNotFound', message: `no such application: ${uuid}` });
});

t.test('DeleteApplication answers 204 with no body; the application is gone', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const a = (await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } })).body;

    const r = await h.call('DELETE', `/applications/${a.uuid}`);
    t.equal(r.status, 204);
    t.equal(r.text, '');
    t.equal((await h.call('GET', `/applications/${a.uuid}`)).status, 404);
    t.strictSame((await h.call('GET', '/applications')).body, []);
});

t.test('deleting a missing application is 404 with a ResourceNotFound body', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    const r = await h.call('DELETE', `/applications/${uuid}`);
    t.equal(r.status, 404);
    t.strictSame(r.body, { code: 'ResourceNotFound', message: `no such application: ${uuid}` });
});
