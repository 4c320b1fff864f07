// Ping answers with the mode and the store's health.

import t from 'tap';

import { startSapi } from '../lib/harness.js';

t.test('GET /ping reports mode and store status', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('GET', '/ping');
    t.equal(r.status, 200);
    t.same(r.body, { mode: 'proto', storType: 'SqliteStorage', storAvailable: true });
    t.equal(r.headers.get('server'), 'sapi/2.1.2');
    t.ok(r.headers.get('x-request-id'));
    t.ok(r.headers.get('x-server-name'));
});

t.test('x-request-id is echoed when given', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('GET', '/ping', { headers: { 'x-request-id': 'abc-123' } });
    t.equal(r.headers.get('x-request-id'), 'abc-123');
});
