// include_master on every list: accepted ("true"/"false" strings too) and inert when no master Moray is configured.

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('with no master configured, include_master changes nothing', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    await anInstance(h, svc.uuid);
    await aManifest(h);
    for (const coll of ['applications', 'services', 'instances', 'manifests']) {
        const plain = await h.call('GET', `/${coll}`);
        t.equal(plain.body.length, 1, `${coll}: one object`);
        for (const v of ['true', 'false', '1']) {
            const r = await h.call('GET', `/${coll}?include_master=${v}`);
            t.equal(r.status, 200, `${coll}?include_master=${v}`);
            t.strictSame(r.body, plain.body, 'no duplicates, nothing extra');
        }
    }
    isError(t, await h.call('GET', '/applications?include_master=maybe'), 409, 'InvalidArgument', /^include_master must be /);
});
