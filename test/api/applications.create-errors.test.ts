// Applications: every rejected create is a coded 4xx, in 2.1.2's check order, and writes nothing.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, OWNER } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

async function applications(h: Harness): Promise<unknown> {
    return (await h.call('GET', '/applications')).body;
}

t.test('missing keys are listed in route order: name, owner_uuid', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);

    isError(t, await h.call('POST', '/applications', { body: {} }), 409, 'MissingParameter', 'missing required keys: name, owner_uuid');
    isError(t, await h.call('POST', '/applications', { body: { owner_uuid: OWNER } }), 409, 'MissingParameter', 'missing required keys: name');
    isError(t, await h.call('POST', '/applications', { body: { name: 'sdc' } }), 409, 'MissingParameter', 'missing required keys: owner_uuid');
    t.strictSame(await applications(h), [], 'nothing was written');

    const r = await h.call('POST', '/applications', { body: { name: '', owner_uuid: OWNER } });
    t.equal(r.status, 200, 'an empty string counts as present');
    t.equal(r.body.name, '');
});

t.test('D1a: an unknown manifest reference is 404 no such manifest, nothing written', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const m = await aManifest(h);
    const missing = randomUUID();
    const r = await h.call('POST', '/applications', {
        body: { name: 'sdc', owner_uuid: OWNER, manifests: { good: m.uuid, bad: missing } },
    });
    isError(t, r, 404, 'ResourceNotFound', `no such manifest: ${missing}`);
    t.strictSame(await applications(h), [], 'nothing was written');
});

t.test('metadata failing metadata_schema is 409 SchemaValidationError in jsprim wording, nothing written', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const schema = { type: 'object', properties: { datacenter_name: { type: 'string' } } };
    const r = await h.call('POST', '/applications', {
        body: { name: 'sdc', owner_uuid: OWNER, metadata_schema: schema, metadata: { datacenter_name: 5 } },
    });
    isError(t, r, 409, 'SchemaValidationError', 'property "datacenter_name": number value found, but a string is required');
    t.strictSame(await applications(h), [], 'nothing was written');

    const ok = await h.call('POST', '/applications', {
        body: { name: 'sdc', owner_uuid: OWNER, metadata_schema: schema, metadata: { datacenter_name: 'us-east-1' } },
    });
    t.equal(ok.status, 200, 'valid metadata is accepted');
});

t.test('uuid fields that are not UUIDs are 409 "<field> must be a UUID"', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    isError(t, await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: 'not-a-uuid' } }), 409, 'InvalidArgument', 'owner_uuid must be a UUID');
    isError(
        t,
        await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER, uuid: '../sapi_services/x' } }),
        409,
        'InvalidArgument',
        'uuid must be a UUID',
    );
    t.strictSame(await applications(h), [], 'nothing was written');
});

t.test('wrong JSON types are 409 InvalidArgument "<field> must be <type>", never a crash', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const cases: [Record<string, unknown>, string | RegExp][] = [
        [{ name: 5 }, 'name must be string'],
        [{ name: ['sdc'] }, 'name must be string'],
        [{ params: 'x' }, 'params must be object'],
        [{ metadata: [1, 2] }, 'metadata must be object'],
        [{ metadata_schema: 'x' }, 'metadata_schema must be object'],
        [{ manifests: 'x' }, 'manifests must be object'],
        [{ manifests: { a: 5 } }, /^manifests\.a must be string$/],
        [{ master: 'yes' }, /^master must be /],
        [{ master: 5 }, /^master must be /],
        [{ master: {} }, /^master must be /],
    ];
    for (const [extra, message] of cases) {
        t.comment(JSON.stringify(extra));
        const r = await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER, ...extra } });
        isError(t, r, 409, 'InvalidArgument', message);
    }
    t.strictSame(await applications(h), [], 'nothing was written');
    t.equal((await h.call('GET', '/ping')).status, 200, 'the server is still up');
});

t.test('master accepts "true"/"false" strings; "false" is false', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const yes = await h.call('POST', '/applications', { body: { name: 'a', owner_uuid: OWNER, master: 'true' } });
    t.equal(yes.status, 200);
    t.equal(yes.body.master, true);
    const no = await h.call('POST', '/applications', { body: { name: 'b', owner_uuid: OWNER, master: 'false' } });
    t.equal(no.status, 200);
    t.notOk('master' in no.body, '"false" is not stored as master');
    const q = await h.call('POST', `/applications?name=c&owner_uuid=${OWNER}&master=false`);
    t.equal(q.status, 200);
    t.notOk('master' in q.body, 'a query-string "false" is false too');
});

t.test('a duplicate uuid is 409 "application already exists", the first one is untouched', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    const first = await h.call('POST', '/applications', { body: { uuid, name: 'sdc', owner_uuid: OWNER, metadata: { a: 1 } } });
    t.equal(first.status, 200);
    const dup = await h.call('POST', '/applications', { body: { uuid, name: 'other', owner_uuid: OWNER } });
    isError(t, dup, 409, 'InvalidArgument', `application already exists: ${uuid}`);
    t.strictSame((await h.call('GET', `/applications/${uuid}`)).body, first.body);
});

t.test('names stay non-unique: two applications may share a name', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const a = await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } });
    const b = await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } });
    t.equal(a.status, 200);
    t.equal(b.status, 200);
    t.not(a.body.uuid, b.body.uuid);
    t.equal((await h.call('GET', '/applications?name=sdc')).body.length, 2);
});
