// SAPI 2.1.2 and SAPI-TS on one Moray: during `sdcadm update sapi` the old
// SAPI still runs in another zone, and an operator may roll back to 2.1.2
// and upgrade again later. 2.1.2 writes instances with their server and
// image only inside `params` (no top-level copies for Moray's index), and
// moves an instance by changing `params` alone.
//
// Starting from 2.1.2's dump, once SAPI-TS has upgraded the buckets: what
// 2.1.2 writes while SAPI-TS runs is found by server and image search
// shortly after (the change feed's repairer); what it writes while SAPI-TS
// is down is found by the first search after SAPI-TS starts again (exact
// while the start-up sweep runs, then through Moray's index).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { connectMoray, type MorayClient } from '../../lib/stor/moray/client.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';
import { startSapi, type Harness } from '../lib/harness.js';
import { instances, loadDump, serverOf } from '../lib/sapi-212-dump.js';

const V2 = '~2';
const INSTANCES = 'sapi_instances';
const TMP = mkdtempSync(join(tmpdir(), 'sapi-212-coexist-'));
t.teardown(() => rmSync(TMP, { recursive: true, force: true }));

function config(fake: FakeMoray, cachePath: string): Record<string, unknown> {
    return {
        port: 0,
        datacenter_name: 'us-test-1',
        instanceUuid: randomUUID(),
        serverUuid: randomUUID(),
        log_level: 'info',
        store: { backend: 'moray', path: cachePath },
        moray: { host: fake.host, port: fake.port },
        vmapi: { url: 'http://vmapi.us-test-1.example.com' },
        cnapi: { url: 'http://cnapi.us-test-1.example.com' },
        imgapi: { url: 'http://imgapi.us-test-1.example.com' },
        napi: { url: 'http://napi.us-test-1.example.com' },
    };
}

async function boot(t: Test, fake: FakeMoray, cachePath: string): Promise<Harness> {
    const h = await startSapi({ viaCreateStore: true, config: config(fake, cachePath), storeOptions: { morayWaitMs: 1000, retryMs: 200 } });
    let closed = false;
    const close = async (): Promise<void> => {
        if (!closed) {
            closed = true;
            await h.close();
        }
    };
    t.teardown(close);
    return { ...h, close };
}

/** Until /ping no longer reports a bucket upgrade under way (tap's timeout bounds it). */
async function upgraded(h: Harness): Promise<void> {
    for (;;) {
        const ping = await h.call('GET', '/ping');
        if (ping.status === 200 && ping.body?.storUpgrade === undefined) {
            return;
        }
        await new Promise((r) => setTimeout(r, 50));
    }
}

const uuidsOf = (body: unknown): string[] => (Array.isArray(body) ? body.map((o) => String((o as JsonObject).uuid)).sort() : []);

async function search(h: Harness, query: string): Promise<string[]> {
    const r = await h.call('GET', `/instances?${query}`, { version: V2 });
    if (r.status !== 200) {
        throw new Error(`GET /instances?${query}: ${r.status} ${r.text.slice(0, 200)}`);
    }
    return uuidsOf(r.body);
}

/**
 * Poll `query` until it answers `want` (sorted uuids). No wall-clock bound:
 * the change feed's repair gets there in its own time (well under 2 s on an
 * idle machine), and tap's per-file timeout guards against a hang.
 */
async function eventually(t: Test, h: Harness, query: string, want: string[], what: string): Promise<void> {
    const expected = JSON.stringify([...want].sort());
    while (JSON.stringify(await search(h, query)) !== expected) {
        await new Promise((r) => setTimeout(r, 50));
    }
    t.pass(what);
}

/** An instance as SAPI 2.1.2 writes it: server and image only in params. */
function as212(service_uuid: string, server_uuid: string, image_uuid: string): JsonObject {
    return { uuid: randomUUID(), service_uuid, params: { alias: 'from-212', server_uuid, image_uuid }, type: 'vm', exists: true };
}

async function put212(raw: MorayClient, v: JsonObject): Promise<void> {
    await raw.putObject(INSTANCES, v.uuid as string, v);
}

t.test('what SAPI 2.1.2 writes beside SAPI-TS is found by server and image', async (t) => {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    await loadDump(fake);
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    t.teardown(() => raw.close());
    const cache = join(TMP, 'cache.sqlite');
    let h = await boot(t, fake, cache);
    await upgraded(h);

    const dump = instances();
    const vm = dump.find((i) => i.type === 'vm' && serverOf(i) !== undefined) as JsonObject;
    const svc = vm.service_uuid as string;
    const server = randomUUID();
    const image = randomUUID();

    await t.test('while SAPI-TS runs: new instances', async (t) => {
        const written: string[] = [];
        for (let i = 0; i < 5; i++) {
            const v = as212(svc, server, image);
            await put212(raw, v);
            written.push(v.uuid as string);
        }
        await eventually(t, h, `server_uuid=${server}`, written, 'found by ?server_uuid=');
        t.same(await search(h, `image_uuid=${image}`), [...written].sort(), 'found by ?image_uuid=');
        t.same(await search(h, `service_uuid=${svc}&server_uuid=${server}`), [...written].sort(), 'found by ?service_uuid=&server_uuid=');

        const seen: string[] = [];
        let marker: string | undefined;
        for (let page = 0; page < 5; page++) {
            const r = await h.call('GET', `/instances?server_uuid=${server}&limit=2${marker ? `&marker=${marker}` : ''}`, { version: V2 });
            t.equal(r.headers.get('x-joyent-resource-count'), '5', `page ${page}: the total`);
            const uuids = (r.body as JsonObject[]).map((o) => o.uuid as string);
            seen.push(...uuids);
            if (uuids.length < 2) {
                break;
            }
            marker = uuids[uuids.length - 1];
        }
        t.same(seen, [...written].sort(), 'pages of 2 with a marker hold each once, in uuid order');
        const stored = (await raw.getObject(INSTANCES, written[0] as string))?.value;
        t.equal(stored?.server_uuid, server, 'the row now has its top-level copies');
        const view = await h.call('GET', `/instances/${written[0] as string}`, { version: V2 });
        t.equal(view.body?.server_uuid, undefined, 'which the API does not show');
    });

    await t.test('while SAPI-TS runs: an instance moved inside params only', async (t) => {
        const from = serverOf(vm) as string;
        const to = randomUUID();
        // 2.1.2 reads the whole object (with the copies SAPI-TS gave it) and writes it back with new params.
        const cur = (await raw.getObject(INSTANCES, vm.uuid as string))?.value as JsonObject;
        t.equal(cur.server_uuid, from, 'the backfill gave it its copy');
        await put212(raw, { ...cur, params: { ...(cur.params as JsonObject), server_uuid: to } });
        await eventually(t, h, `server_uuid=${to}`, [vm.uuid as string], 'found under the new server');
        t.notOk((await search(h, `server_uuid=${from}`)).includes(vm.uuid as string), 'and no longer under the old one');
    });

    await t.test('written while SAPI-TS was down: found by the first search after it starts', async (t) => {
        await h.close();
        const downServer = randomUUID();
        const downImage = randomUUID();
        const written: string[] = [];
        for (let i = 0; i < 3; i++) {
            const v = as212(svc, downServer, downImage);
            await put212(raw, v);
            written.push(v.uuid as string);
        }
        const moved = dump.find((i) => i.type === 'vm' && serverOf(i) !== undefined && i.uuid !== vm.uuid) as JsonObject;
        const cur = (await raw.getObject(INSTANCES, moved.uuid as string))?.value as JsonObject;
        await put212(raw, { ...cur, params: { ...(cur.params as JsonObject), server_uuid: downServer } });
        written.push(moved.uuid as string);

        // Hold the sweep's reads (and the feed's, which read by _mtime too): the searches must not wait for them.
        const release = fake.block('findObjects', (args) => args[0] === INSTANCES && String(args[1]).includes('_mtime'));
        h = await boot(t, fake, cache);
        t.same(await search(h, `server_uuid=${downServer}`), [...written].sort(), 'the first search after the start: exact');
        t.same(await search(h, `image_uuid=${downImage}`), written.slice(0, 3).sort(), 'by image too');
        t.notOk((await search(h, `server_uuid=${serverOf(moved) as string}`)).includes(moved.uuid as string), 'the moved one not under its old server');
        while (fake.held('findObjects') === 0) {
            await new Promise((r) => setTimeout(r, 20));
        }
        const ping = await h.call('GET', '/ping');
        t.equal(ping.body?.storUpgrade?.[INSTANCES]?.phase, 'sweeping', '/ping: the instances bucket is being swept');
        const ofSvc = written.filter((u) => u !== moved.uuid || moved.service_uuid === svc);
        t.same(await search(h, `service_uuid=${svc}&server_uuid=${downServer}`), ofSvc.sort(), 'searches stay exact while it is');

        release();
        await upgraded(h);
        t.equal((await raw.getObject(INSTANCES, written[0] as string))?.value.server_uuid, downServer, 'the sweep gave the rows their copies');
        const byIndex = await raw.findAll(INSTANCES, `(server_uuid=${downServer})`);
        t.same(byIndex.map((r) => r.key).sort(), [...written].sort(), "Moray's own index finds them");
        t.same(await search(h, `server_uuid=${downServer}`), [...written].sort(), 'and so does SAPI-TS, through it');
    });
});
