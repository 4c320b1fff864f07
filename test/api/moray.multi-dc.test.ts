// Multi-DC on Moray: master=true writes to the master DC's Moray; gets and
// deletes fall back to it; include_master lists append its objects.

import t from 'tap';

import { startFakeMoray } from '../lib/fake-moray.js';
import { OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('master objects live in the master moray', async (t) => {
    const local = await startFakeMoray();
    const master = await startFakeMoray();
    t.teardown(async () => {
        await local.close();
        await master.close();
    });
    const h = await startSapi({
        viaCreateStore: true,
        config: {
            mode: 'full',
            store: { backend: 'moray', path: `${process.env.TMPDIR ?? '/tmp'}/sapi-mdc-${process.pid}-${Date.now()}.sqlite` },
            moray: { host: local.host, port: local.port, master_host: master.host, master_port: master.port },
        },
    });
    t.teardown(h.close);
    const mine = await h.call('POST', '/applications', { body: { name: 'local-app', owner_uuid: OWNER } });
    const theirs = await h.call('POST', '/applications', { body: { name: 'manta', owner_uuid: OWNER, master: true } });
    t.equal(theirs.status, 200);
    t.equal(theirs.body.master, true, 'stored with master: true');

    const masterObjects = master.state.buckets.get('sapi_applications');
    const localObjects = local.state.buckets.get('sapi_applications');
    t.ok(JSON.stringify([...(masterObjects?.rows.keys() ?? [])]).includes(theirs.body.uuid), 'written to the master moray');
    t.notOk(JSON.stringify([...(localObjects?.rows.keys() ?? [])]).includes(theirs.body.uuid), 'not to the local one');

    t.equal((await h.call('GET', `/applications/${theirs.body.uuid}`)).status, 200, 'gets look in the master too');
    const plain = await h.call('GET', '/applications');
    t.same(
        plain.body.map((a: { uuid: string }) => a.uuid),
        [mine.body.uuid],
        'lists are local',
    );
    const both = await h.call('GET', '/applications?include_master=true');
    t.same(
        both.body.map((a: { uuid: string }) => a.uuid),
        [mine.body.uuid, theirs.body.uuid],
        'include_master appends the master',
    );
    const upd = await h.call('PUT', `/applications/${theirs.body.uuid}`, { body: { metadata: { x: 1 } } });
    t.equal(upd.status, 200, 'updates re-write to the master');
    t.equal((await h.call('DELETE', `/applications/${theirs.body.uuid}`)).status, 204, 'deletes fall back to the master');
    t.equal((await h.call('GET', `/applications/${theirs.body.uuid}`)).status, 404);
});
