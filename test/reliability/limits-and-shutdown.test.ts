// Body size limit, prototype-pollution keys kept as plain data, and a
// graceful SIGTERM that finishes the request in flight.

import t from 'tap';

import { childSapi, exited } from '../lib/child.js';
import { anApplication, anInstance, aService, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('a body over maxBodyBytes is 413 with a code, and nothing is written', async (t) => {
    const h = await startSapi({ config: { maxBodyBytes: 4096 } });
    t.teardown(h.close);
    const r = await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER, metadata: { big: 'x'.repeat(8192) } } });
    t.equal(r.status, 413);
    t.type(r.body.code, 'string');
    const list = await h.call('GET', '/applications');
    t.same(list.body, []);
});

t.test('__proto__, constructor and prototype keys are stored as plain data', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const raw = `{"name":"sdc","owner_uuid":"${OWNER}","metadata":{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"a":1}}`;
    const r = await h.call('POST', '/applications', { raw });
    t.equal(r.status, 200);
    t.same(JSON.parse(r.text).metadata, JSON.parse('{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"a":1}'));
    const svc = await aService(h, r.body.uuid);
    const inst = await anInstance(h, svc.uuid);
    const up = await h.call('PUT', `/instances/${inst.uuid}`, { raw: '{"metadata":{"__proto__":{"polluted":"yes"}},"params":{"prototype":1}}' });
    t.equal(up.status, 200);
    const cfg = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(cfg.status, 200);
    t.same(JSON.parse(cfg.text).metadata.__proto__, { polluted: 'yes' }, 'merged as an own key');
    const form = await h.call('PUT', `/instances/${inst.uuid}`, {
        raw: 'metadata[__proto__][polluted]=yes&metadata[ok]=1',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    t.ok(form.status < 500);
    t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
    t.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
});

t.test('SIGTERM: in-flight requests finish, then the process exits 0', async (t) => {
    const child = await childSapi(t);
    const url = child.url;
    const proc = await child.start();
    const h = {
        call: async (m: string, p: string, o: { body?: unknown } = {}) => {
            const r = await fetch(url + p, { method: m, headers: { 'content-type': 'application/json' }, body: JSON.stringify(o.body) });
            return { status: r.status, body: (await r.json()) as { uuid: string } };
        },
    };
    const app = (await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } })).body;
    const svc = (await h.call('POST', '/services', { body: { name: 's', application_uuid: app.uuid } })).body;
    await Promise.all(
        Array.from({ length: 8 }, async () => {
            for (let i = 0; i < 500; i++) {
                await h.call('POST', '/instances', { body: { service_uuid: svc.uuid } });
            }
        }),
    );
    const res = await fetch(`${url}/instances`);
    proc.kill('SIGTERM');
    const list = (await res.json()) as unknown[];
    t.equal(list.length, 4000, 'the in-flight list completed');
    t.equal(await exited(proc), 0, 'clean exit');
    void anApplication;
});
