// UpdateApplication: owner_uuid changes under any action, and metadata must still satisfy metadata_schema after the change.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { anApplication, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const SCHEMA = {
    type: 'object',
    properties: { datacenter_name: { type: 'string' }, PORT: { type: 'number' } },
};

t.test('a truthy owner_uuid replaces the owner whatever the action; a falsy one is ignored', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h, { metadata: { a: 1 } });
    for (const action of ['update', 'replace', 'delete']) {
        const owner = randomUUID();
        const r = await h.call('PUT', `/applications/${app.uuid}`, { body: { action, owner_uuid: owner } });
        t.equal(r.status, 200, action);
        t.equal(r.body.owner_uuid, owner, `${action}: owner replaced`);
        t.strictSame(r.body.metadata, { a: 1 }, `${action}: metadata untouched`);
    }
    const before = (await h.call('GET', `/applications/${app.uuid}`)).body;
    const r = await h.call('PUT', `/applications/${app.uuid}`, { body: { owner_uuid: '' } });
    t.equal(r.status, 200);
    t.strictSame(r.body, before, 'an empty owner_uuid is left alone');
    isError(t, await h.call('PUT', `/applications/${app.uuid}`, { body: { owner_uuid: 'admin' } }), 409, 'InvalidArgument', 'owner_uuid must be a UUID');
});

t.test('an update that breaks metadata_schema is 409 SchemaValidationError and nothing is written', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h, { owner_uuid: OWNER, metadata_schema: SCHEMA, metadata: { datacenter_name: 'east', PORT: 80 } });

    const bad = await h.call('PUT', `/applications/${app.uuid}`, { body: { metadata: { datacenter_name: 7 }, params: { x: 1 } } });
    isError(t, bad, 409, 'SchemaValidationError', 'property "datacenter_name": number value found, but a string is required');
    t.strictSame((await h.call('GET', `/applications/${app.uuid}`)).body, app, 'neither metadata nor params were written');

    const ok = await h.call('PUT', `/applications/${app.uuid}`, { body: { metadata: { datacenter_name: 'west' } } });
    t.equal(ok.status, 200);
    t.strictSame(ok.body.metadata, { datacenter_name: 'west', PORT: 80 });
});

t.test('the new metadata_schema applies: replacing the schema checks the stored metadata against it', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h, { metadata: { PORT: '80' } });
    const bad = await h.call('PUT', `/applications/${app.uuid}`, { body: { metadata_schema: SCHEMA } });
    isError(t, bad, 409, 'SchemaValidationError', 'property "PORT": string value found, but a number is required');
    t.strictSame((await h.call('GET', `/applications/${app.uuid}`)).body, app, 'the schema was not stored');

    const both = await h.call('PUT', `/applications/${app.uuid}`, { body: { metadata_schema: SCHEMA, metadata: { PORT: 80 } } });
    t.equal(both.status, 200, 'schema and conforming metadata in one request');
    t.strictSame(both.body.metadata_schema, SCHEMA);
    t.strictSame(both.body.metadata, { PORT: 80 });

    const del = await h.call('PUT', `/applications/${app.uuid}`, { body: { action: 'delete', metadata_schema: { properties: true } } });
    t.equal(del.status, 200, 'metadata_schema follows the actions too');
    t.strictSame(del.body.metadata_schema, { type: 'object' });
});
