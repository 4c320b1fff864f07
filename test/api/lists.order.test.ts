// Every list is in a stable order — creation time ascending — whatever the uuids, and updates do not reorder.

import t from 'tap';

import { anApplication, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

/** Uuids in descending order, so creation order and uuid order disagree. */
const desc = (n: number, prefix: string): string[] =>
    Array.from({ length: n }, (_, i) => `${(15 - i).toString(16).repeat(8)}-${prefix}-4000-8000-000000000000`);

t.test('applications, services, instances and manifests list in creation order', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const n = 6;
    const appUuids = desc(n, 'aaaa');
    for (const uuid of appUuids) {
        t.equal((await h.call('POST', '/applications', { body: { uuid, name: 'sdc', owner_uuid: OWNER } })).status, 200);
    }
    const app = await anApplication(h, { name: 'parent' });
    const svcUuids = desc(n, 'bbbb');
    for (const uuid of svcUuids) {
        t.equal((await h.call('POST', '/services', { body: { uuid, name: 's', application_uuid: app.uuid } })).status, 200);
    }
    const instUuids = desc(n, 'cccc');
    for (const uuid of instUuids) {
        t.equal((await h.call('POST', '/instances', { body: { uuid, service_uuid: svcUuids[0] } })).status, 200);
    }
    const manUuids = desc(n, 'dddd');
    for (const uuid of manUuids) {
        t.equal((await h.call('POST', '/manifests', { body: { uuid, name: 'm', path: '/x', template: 'x' } })).status, 200);
    }

    // Touch the first of each: an update must not move it to the end.
    await h.call('PUT', `/applications/${appUuids[0]}`, { body: { metadata: { touched: 1 } } });
    await h.call('PUT', `/services/${svcUuids[0]}`, { body: { metadata: { touched: 1 } } });
    await h.call('PUT', `/instances/${instUuids[0]}`, { body: { metadata: { touched: 1 } } });

    const uuids = async (path: string): Promise<string[]> => ((await h.call('GET', path)).body as { uuid: string }[]).map((o) => o.uuid);
    for (let i = 0; i < 2; i++) {
        t.strictSame(await uuids('/applications?name=sdc'), appUuids, 'applications');
        t.strictSame(await uuids('/services'), svcUuids, 'services');
        t.strictSame(await uuids('/instances'), instUuids, 'instances');
        t.strictSame(await uuids(`/instances?service_uuid=${svcUuids[0]}`), instUuids, 'instances of a service');
        t.strictSame(await uuids('/manifests'), manUuids, 'manifests');
    }
});
