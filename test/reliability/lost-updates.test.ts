// No lost updates: 32 concurrent writers on one instance, with and without
// If-Match; every key is there at the end.

import t from 'tap';

import { anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const WRITERS = 32;
const KEYS_EACH = 5;

t.test('concurrent metadata updates without If-Match never lose a key', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const svc = await aService(h, (await anApplication(h)).uuid);
    const inst = await anInstance(h, svc.uuid);
    let failures = 0;
    await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
            for (let k = 0; k < KEYS_EACH; k++) {
                const r = await h.call('PUT', `/instances/${inst.uuid}`, { body: { metadata: { [`w${w}_k${k}`]: k } } });
                if (r.status !== 200) {
                    failures++;
                }
            }
        }),
    );
    const got = await h.call('GET', `/instances/${inst.uuid}`);
    const keys = Object.keys(got.body.metadata ?? {});
    const lost = WRITERS * KEYS_EACH - keys.length;
    t.comment(`lost-updates (no If-Match): ${WRITERS * KEYS_EACH} updates tried, ${failures} failed, ${lost} lost`);
    t.equal(failures, 0);
    t.equal(lost, 0);
});

t.test('concurrent writers with If-Match and retry on 412 never lose a key', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const svc = await aService(h, (await anApplication(h)).uuid);
    const inst = await anInstance(h, svc.uuid);
    let conflicts = 0;
    let failures = 0;
    await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
            for (let k = 0; k < KEYS_EACH; k++) {
                for (let attempt = 0; attempt < 200; attempt++) {
                    const cur = await h.call('GET', `/instances/${inst.uuid}`);
                    const etag = cur.headers.get('etag') ?? '';
                    const metadata = { ...(cur.body.metadata ?? {}), [`w${w}_k${k}`]: k };
                    const r = await h.call('PUT', `/instances/${inst.uuid}`, {
                        body: { action: 'replace', metadata },
                        headers: { 'if-match': etag },
                    });
                    if (r.status === 200) {
                        break;
                    }
                    if (r.status === 412 && r.body.code === 'PreconditionFailed') {
                        conflicts++;
                        continue;
                    }
                    failures++;
                    break;
                }
            }
        }),
    );
    const got = await h.call('GET', `/instances/${inst.uuid}`);
    const lost = WRITERS * KEYS_EACH - Object.keys(got.body.metadata ?? {}).length;
    t.comment(`lost-updates (If-Match + retry): ${WRITERS * KEYS_EACH} updates, ${conflicts} 412s retried, ${lost} lost`);
    t.equal(failures, 0);
    t.equal(lost, 0);
    t.ok(conflicts > 0, 'the writers really raced');
});

t.test('If-Match with a stale etag is 412 and writes nothing', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h, { metadata: { a: 1 } });
    const cur = await h.call('GET', `/applications/${app.uuid}`);
    const etag = cur.headers.get('etag') ?? '';
    t.match(etag, /^"[0-9a-f]+"$/, 'quoted etag');
    const ok = await h.call('PUT', `/applications/${app.uuid}`, { body: { metadata: { b: 2 } }, headers: { 'if-match': etag } });
    t.equal(ok.status, 200);
    t.not(ok.headers.get('etag'), etag, 'a new etag after the write');
    const stale = await h.call('PUT', `/applications/${app.uuid}`, { body: { metadata: { c: 3 } }, headers: { 'if-match': etag } });
    t.equal(stale.status, 412);
    t.equal(stale.body.code, 'PreconditionFailed');
    const after = await h.call('GET', `/applications/${app.uuid}`);
    t.same(after.body.metadata, { a: 1, b: 2 });
});
