// The parameter bag: path > query > body, creates entirely from the query string, form-urlencoded bodies with bracket syntax.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { anApplication, aService, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

t.test('a path :uuid beats a query uuid, which beats a body uuid', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const a = await anApplication(h, { metadata: { who: 'a' } });
    const b = await anApplication(h, { metadata: { who: 'b' } });
    const r = await h.call('PUT', `/applications/${a.uuid}?uuid=${b.uuid}`, { body: { uuid: randomUUID(), metadata: { touched: true } } });
    t.equal(r.status, 200);
    t.equal(r.body.uuid, a.uuid, 'the path object was updated');
    t.strictSame(r.body.metadata, { who: 'a', touched: true });
    t.strictSame((await h.call('GET', `/applications/${b.uuid}`)).body, b, 'the query uuid was not touched');
});

t.test('a query field beats the same body field', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('POST', `/applications?name=from-query`, { body: { name: 'from-body', owner_uuid: OWNER } });
    t.equal(r.status, 200);
    t.equal(r.body.name, 'from-query');
    const svcApp = await anApplication(h);
    const s = await h.call('POST', `/services?type=agent`, { body: { name: 'x', application_uuid: svcApp.uuid, type: 'vm' }, version: '~2' });
    t.equal(s.body.type, 'agent');
});

t.test('creates work with every field in the query string, brackets making nested objects', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const appUuid = randomUUID();
    const app = await h.call(
        'POST',
        `/applications?uuid=${appUuid}&name=sdc&owner_uuid=${OWNER}&params[ram]=1024&params[tags][role]=x&metadata[PORT]=80&master=true`,
    );
    t.equal(app.status, 200);
    t.strictSame(
        app.body,
        {
            uuid: appUuid,
            name: 'sdc',
            owner_uuid: OWNER,
            params: { ram: '1024', tags: { role: 'x' } },
            metadata: { PORT: '80' },
            master: true,
        },
        'query values are strings',
    );

    const svc = await h.call('POST', `/services?name=vm-agent&application_uuid=${appUuid}&type=agent&metadata[A]=1`, { version: '~2' });
    t.equal(svc.status, 200);
    t.strictSame(svc.body, { uuid: svc.body.uuid, name: 'vm-agent', application_uuid: appUuid, type: 'agent', metadata: { A: '1' } });

    const cn = randomUUID();
    const img = randomUUID();
    const instUuid = randomUUID();
    const inst = await h.call('POST', `/instances?service_uuid=${svc.body.uuid}&uuid=${instUuid}&params[server_uuid]=${cn}&params[image_uuid]=${img}`);
    t.equal(inst.status, 200);
    t.strictSame(inst.body, { uuid: instUuid, service_uuid: svc.body.uuid, params: { server_uuid: cn, image_uuid: img } });

    const m = await h.call('POST', `/manifests?name=x&path=${encodeURIComponent('/etc/x.json')}&template=${encodeURIComponent('{{{X}}}')}&version=1.2.3`);
    t.equal(m.status, 200);
    t.strictSame(m.body, { uuid: m.body.uuid, name: 'x', path: '/etc/x.json', template: '{{{X}}}', version: '1.2.3' });
});

t.test('form-urlencoded bodies are accepted, bracket syntax included', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const raw = `name=sdc&owner_uuid=${OWNER}&metadata[k]=v&params[nested][a]=1&master=false`;
    const r = await h.call('POST', '/applications', { raw, headers: FORM });
    t.equal(r.status, 200);
    t.strictSame(r.body, { uuid: r.body.uuid, name: 'sdc', owner_uuid: OWNER, metadata: { k: 'v' }, params: { nested: { a: '1' } } });

    const upd = await h.call('PUT', `/applications/${r.body.uuid}`, { raw: 'action=delete&metadata[k]=', headers: FORM });
    t.equal(upd.status, 200);
    t.strictSame(upd.body.metadata, {}, 'updates too');

    const svc = await aService(h, r.body.uuid);
    const inst = await h.call('POST', '/instances', { raw: `service_uuid=${svc.uuid}&metadata[x]=y`, headers: FORM });
    t.equal(inst.status, 200);
    t.strictSame(inst.body.metadata, { x: 'y' });
});

t.test('other content types are ignored, not parsed', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('POST', `/applications?name=sdc&owner_uuid=${OWNER}`, { raw: 'name=ignored', headers: { 'content-type': 'text/plain' } });
    t.equal(r.status, 200);
    t.strictSame(r.body, { uuid: r.body.uuid, name: 'sdc', owner_uuid: OWNER });
});
