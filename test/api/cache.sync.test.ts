// POST /cache: SyncCache answers 204 with no body — immediately in proto mode, and in full mode on a store without a cache.

import t from 'tap';

import { startSapi } from '../lib/harness.js';

t.test('POST /cache is 204 in proto mode and in full mode', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    let r = await h.call('POST', '/cache');
    t.equal(r.status, 204);
    t.equal(r.text, '');
    t.equal((await h.call('POST', '/mode?mode=full')).status, 204);
    r = await h.call('POST', '/cache');
    t.equal(r.status, 204);
    t.equal(r.text, '');
});
