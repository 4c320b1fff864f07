// GET/POST /mode: a bare JSON string, the one-way proto → full switch that survives restarts, and what full mode without deployers does.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { anAgentService, anApplication, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('GET /mode is the bare JSON string "proto" on a fresh store', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('GET', '/mode');
    t.equal(r.status, 200);
    t.match(r.headers.get('content-type'), /^application\/json/);
    t.equal(r.text, '"proto"');
    t.equal(r.body, 'proto');
});

t.test('POST /mode rejects a missing mode and anything but full, staying in proto', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    isError(t, await h.call('POST', '/mode'), 409, 'MissingParameter', 'missing "mode" parameter');
    isError(t, await h.call('POST', '/mode?mode='), 409, 'MissingParameter', 'missing "mode" parameter');
    isError(t, await h.call('POST', '/mode?mode=proto'), 409, 'InvalidArgument', 'invalid mode: proto');
    isError(t, await h.call('POST', '/mode', { body: { mode: 'FULL' } }), 409, 'InvalidArgument', 'invalid mode: FULL');
    isError(t, await h.call('POST', '/mode', { body: { mode: 5 } }), 409, 'InvalidArgument', /^invalid mode: /);
    t.equal((await h.call('GET', '/mode')).body, 'proto');
});

t.test('POST /mode?mode=full → 204; again → 204 (no-op); proto is refused after; the switch survives a restart', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));

    const h1 = await startSapi({ dir, keepDir: true });
    const r = await h1.call('POST', '/mode?mode=full');
    t.equal(r.status, 204);
    t.equal(r.text, '');
    t.equal((await h1.call('GET', '/mode')).body, 'full');
    t.equal((await h1.call('GET', '/ping')).body.mode, 'full');
    t.equal((await h1.call('POST', '/mode', { body: { mode: 'full' } })).status, 204, 'already full: no-op');
    isError(
        t,
        await h1.call('POST', '/mode?mode=proto'),
        409,
        'InvalidArgument',
        'the switch to full mode is one-way: a SAPI in full mode cannot go back to proto',
    );
    await h1.close();

    const h2 = await startSapi({ dir, keepDir: true });
    t.teardown(h2.close);
    t.equal((await h2.call('GET', '/mode')).body, 'full', 'still full after a restart');
});

t.test('full mode without a vm deployer: creating a vm instance is a 5xx naming the deployer, nothing written', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid, { params: { image_uuid: randomUUID() } });
    t.equal((await h.call('POST', '/mode?mode=full')).status, 204);

    for (const version of ['~2', undefined]) {
        const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid: randomUUID() }, ...(version ? { version } : {}) });
        t.ok(r.status >= 500 && r.status < 600, `${version ?? 'v1'}: 5xx (${r.status})`);
        t.equal(typeof r.body?.code, 'string', 'a coded error');
        t.match(r.body?.message, /deployer/);
        t.match(r.body?.message, /vm/);
    }
    t.strictSame((await h.call('GET', '/instances', { version: '~2' })).body, [], 'nothing was written');
    t.equal((await h.call('GET', '/ping')).status, 200);
});

t.test('full mode without deployers: a v1 agent self-adoption still records (agents-contract §0.2)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    t.equal((await h.call('POST', '/mode?mode=full')).status, 204);

    const uuid = randomUUID();
    const params = { server_uuid: randomUUID(), image_uuid: randomUUID() };
    const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid, params } });
    t.equal(r.status, 200);
    t.strictSame(r.body, { uuid, service_uuid: svc.uuid, params });
    const again = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid, params } });
    t.equal(again.status, 200, 'and re-adoption too');
    t.strictSame((await h.call('GET', `/instances?service_uuid=${svc.uuid}`)).body, [r.body]);
    t.equal((await h.call('DELETE', `/instances/${uuid}`)).status, 204, 'a v1 delete of an agent only removes the record');
});
