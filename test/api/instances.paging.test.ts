// Paging: limit + marker in uuid order, the count header, stable pages
// under concurrent writes, and the streamed unpaged list.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

async function seed(h: Harness, n: number): Promise<{ svc: string; uuids: string[] }> {
    const app = await anApplication(h);
    const svc = (await aService(h, app.uuid)).uuid as string;
    const uuids: string[] = [];
    for (let i = 0; i < n; i++) {
        const r = await h.call('POST', '/instances', { body: { service_uuid: svc } });
        uuids.push(r.body.uuid as string);
    }
    return { svc, uuids };
}

/** Every page, in order; `between` runs after each page but the last. */
async function allPages(h: Harness, qs: string, limit: number, between?: () => Promise<void>): Promise<string[]> {
    const seen: string[] = [];
    let marker: string | undefined;
    for (;;) {
        const r = await h.call('GET', `/instances?${qs}&limit=${limit}${marker ? `&marker=${marker}` : ''}`, { version: '~2' });
        if (r.status !== 200) {
            throw new Error(r.text);
        }
        const page = r.body as { uuid: string }[];
        seen.push(...page.map((i) => i.uuid));
        if (page.length < limit) {
            return seen;
        }
        marker = page[page.length - 1]?.uuid;
        await between?.();
    }
}

t.test('pages come in uuid order, marker exclusive, total in the header', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const { svc, uuids } = await seed(h, 25);
    const first = await h.call('GET', `/instances?service_uuid=${svc}&limit=10`, { version: '~2' });
    t.equal(first.status, 200);
    t.equal(first.body.length, 10);
    t.equal(first.headers.get('x-joyent-resource-count'), '25');
    const sorted = [...uuids].sort();
    t.same(
        first.body.map((i: { uuid: string }) => i.uuid),
        sorted.slice(0, 10),
    );
    const all = await allPages(h, `service_uuid=${svc}`, 10);
    t.same(all, sorted, 'every instance exactly once, in uuid order');
    const after = await h.call('GET', `/instances?limit=5&marker=${sorted[22]}`, { version: '~2' });
    t.same(
        after.body.map((i: { uuid: string }) => i.uuid),
        sorted.slice(23),
    );
    t.equal(after.headers.get('x-joyent-resource-count'), '25', 'the total counts every match, not the page');
});

t.test('iterating pages during concurrent creates and deletes', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const { svc, uuids } = await seed(h, 60);
    const stable = uuids.slice(0, 40);
    const doomed = uuids.slice(40);
    let stop = false;
    const created: string[] = [];
    const churn = (async () => {
        let i = 0;
        while (!stop) {
            const r = await h.call('POST', '/instances', { body: { service_uuid: svc, uuid: randomUUID() } });
            created.push(r.body.uuid as string);
            const victim = doomed[i++];
            if (victim) {
                await h.call('DELETE', `/instances/${victim}`);
            }
        }
    })();
    // Between two pages, at least one more create (and delete) lands: the
    // writes interleave with the paging however fast either runs.
    let pages = 1;
    const seen = await allPages(h, `service_uuid=${svc}`, 7, async () => {
        pages++;
        const before = created.length;
        while (created.length === before) {
            await new Promise((r) => setTimeout(r, 5));
        }
    });
    stop = true;
    await churn;
    const counts = new Map<string, number>();
    for (const u of seen) {
        counts.set(u, (counts.get(u) ?? 0) + 1);
    }
    t.ok(
        [...counts.values()].every((c) => c === 1),
        'no instance twice',
    );
    t.ok(
        stable.every((u) => counts.get(u) === 1),
        'every instance that existed throughout is there',
    );
    t.ok(created.length >= pages - 1, `writes ran between the pages (${created.length} creates, ${pages} pages)`);
});

t.test('without limit the whole list is streamed, in creation order', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const { uuids } = await seed(h, 1200);
    const r = await h.call('GET', '/instances', { version: '~2' });
    t.equal(r.status, 200);
    t.equal(r.headers.get('x-joyent-resource-count'), '1200');
    t.equal(r.headers.get('transfer-encoding'), 'chunked', 'streamed, not buffered');
    t.equal(r.headers.get('content-type'), 'application/json');
    t.same(
        r.body.map((i: { uuid: string }) => i.uuid),
        uuids,
        'creation order (D8)',
    );
});

t.test('services and applications filter and page too', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const a1 = await anApplication(h);
    const a2 = await anApplication(h, { name: 'manta' });
    for (let i = 0; i < 5; i++) {
        await aService(h, a1.uuid, { name: `s${i}` });
    }
    await aService(h, a2.uuid, { name: 's0', type: 'agent' });
    const byName = await h.call('GET', '/services?name=s0', { version: '~2' });
    t.equal(byName.body.length, 2);
    const page = await h.call('GET', `/services?application_uuid=${a1.uuid}&limit=2`, { version: '~2' });
    t.equal(page.body.length, 2);
    t.equal(page.headers.get('x-joyent-resource-count'), '5');
    const apps = await h.call('GET', '/applications?name=manta&limit=1');
    t.same(
        apps.body.map((a: { uuid: string }) => a.uuid),
        [a2.uuid],
    );
    t.equal(apps.headers.get('x-joyent-resource-count'), '1');
    const bad = await h.call('GET', '/services?type=zone', { version: '~2' });
    t.equal(bad.status, 409);
});

t.test('manifests page too', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
        made.push(((await h.call('POST', '/manifests', { body: { name: `m${i}`, path: `/etc/m${i}`, template: 'x' } })).body as { uuid: string }).uuid);
    }
    const sorted = [...made].sort();
    const page = await h.call('GET', '/manifests?limit=2');
    t.same(
        page.body.map((m: { uuid: string }) => m.uuid),
        sorted.slice(0, 2),
    );
    t.equal(page.headers.get('x-joyent-resource-count'), '5');
    const next = await h.call('GET', `/manifests?limit=2&marker=${sorted[1]}`);
    t.same(
        next.body.map((m: { uuid: string }) => m.uuid),
        sorted.slice(2, 4),
    );
    const all = await h.call('GET', '/manifests');
    t.same(
        all.body.map((m: { uuid: string }) => m.uuid),
        made,
        'unpaged: creation order',
    );
    t.equal((await h.call('GET', '/manifests?limit=0')).status, 409);
});

t.test('empty filter and paging values are ignored on every list (2.1.2)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    await aService(h, app.uuid);
    for (const path of [
        '/applications?name=&owner_uuid=&marker=&limit=',
        '/services?application_uuid=&name=&type=&marker=',
        '/instances?server_uuid=&marker=',
        '/manifests?marker=&limit=',
    ]) {
        const r = await h.call('GET', path, { version: '~2' });
        t.equal(r.status, 200, path);
    }
    t.equal((await h.call('GET', '/services?application_uuid=', { version: '~2' })).body.length, 1);
});
