// Lists on Moray answered from the local cache that the change feed keeps
// current (lib/stor/mirror.ts), with two SAPIs on one Moray:
//   - a write through one SAPI is in the very next list through the other
//     (read-your-writes across SAPIs), deletes included, and those lists
//     really come from the cache;
//   - a row written the way SAPI 2.1.2 writes it (params only, no index
//     copies; its delete leaves no tombstone) is never hidden and never
//     resurrected by a list;
//   - a delete the feed cannot see, of a row SAPI-TS wrote, is caught by
//     Moray's count beside the poll;
//   - the first GetConfig of an instance reads no Moray object once the
//     cache is current.

import { randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import type { LocalMirror } from '../../lib/stor/mirror.js';
import { connectMoray, type MorayClient } from '../../lib/stor/moray/client.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';
import { startSapi, type Harness } from '../lib/harness.js';

const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';
const INSTANCES = 'sapi_instances';

async function sapiOn(moray: FakeMoray): Promise<Harness> {
    return startSapi({
        viaCreateStore: true,
        config: { mode: 'full', store: { backend: 'moray' }, moray: { host: moray.host, port: moray.port } },
    });
}

function mirrorOf(h: Harness): LocalMirror {
    const m = h.store.capabilities().changeMirror;
    if (!m) {
        throw new Error('no change mirror on this store');
    }
    return m as LocalMirror;
}

/** Until the cache of `h` is complete and kept current by its feed. */
async function current(h: Harness): Promise<void> {
    const m = mirrorOf(h);
    for (let i = 0; !m.keptCurrent(); i++) {
        if (i > 2000) {
            throw new Error('the local cache never became current');
        }
        await new Promise((r) => setTimeout(r, 10));
    }
}

interface World {
    moray: FakeMoray;
    raw: MorayClient;
    a: Harness;
    b: Harness;
    service: string;
}

async function world(t: Test): Promise<World> {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const a = await sapiOn(moray);
    t.teardown(() => a.close());
    const app = await a.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } });
    t.equal(app.status, 200, app.text);
    const svc = await a.call('POST', '/services', { body: { name: 'vm-agent', application_uuid: app.body.uuid, type: 'agent' }, version: '~2' });
    t.equal(svc.status, 200, svc.text);
    const b = await sapiOn(moray);
    t.teardown(() => b.close());
    await current(a);
    await current(b);
    const raw = await connectMoray({ host: moray.host, port: moray.port });
    t.teardown(() => raw.close());
    return { moray, raw, a, b, service: svc.body.uuid as string };
}

/** The uuids GET /instances?<query> answers through `h`. */
async function listed(t: Test, h: Harness, query: string): Promise<string[]> {
    const r = await h.call('GET', `/instances?${query}`, { version: '~2' });
    t.equal(r.status, 200, r.text);
    return (r.body as { uuid: string }[]).map((i) => i.uuid).sort();
}

t.test('a write through one SAPI is in the very next list through the other, from its cache', async (t) => {
    const w = await world(t);
    const made: string[] = [];
    const before = { ...mirrorOf(w.b).served };
    for (let i = 0; i < 8; i++) {
        // An agent's registration: one instance of a service per server.
        const uuid = randomUUID();
        const server = randomUUID();
        const r = await w.a.call('POST', '/instances', { body: { uuid, service_uuid: w.service, params: { server_uuid: server } } });
        t.equal(r.status, 200, r.text);
        made.push(uuid);
        t.same(await listed(t, w.b, `service_uuid=${w.service}`), [...made].sort(), `create ${i + 1}: in B's next list by service`);
        t.same(await listed(t, w.b, `server_uuid=${server}`), [uuid], `create ${i + 1}: in B's next list by server`);
    }
    const gone = made.shift() as string;
    const del = await w.a.call('DELETE', `/instances/${gone}`);
    t.equal(del.status, 204, del.text);
    t.same(await listed(t, w.b, `service_uuid=${w.service}`), [...made].sort(), 'a delete through A is in the next list through B');
    const paged = await w.b.call('GET', `/instances?service_uuid=${w.service}&limit=3`, { version: '~2' });
    t.equal(paged.status, 200);
    t.same(
        (paged.body as { uuid: string }[]).map((i) => i.uuid),
        [...made].sort().slice(0, 3),
        'pages too',
    );
    const after = mirrorOf(w.b).served;
    t.ok(after.mirror - before.mirror >= 17, `B answered the lists from its cache (${after.mirror - before.mirror} times)`);
    t.equal(after.moray, before.moray, 'and none from Moray');
});

t.test('a row written as SAPI 2.1.2 writes it is never hidden or resurrected by a list', async (t) => {
    const w = await world(t);
    const server = randomUUID();
    // Params only, no top-level copies; deleted without a tombstone.
    const old = { uuid: randomUUID(), service_uuid: w.service, type: 'agent', params: { server_uuid: server } };
    await w.raw.putObject(INSTANCES, old.uuid, old);
    t.same(await listed(t, w.b, `server_uuid=${server}`), [old.uuid], 'found by server at once');
    t.same(await listed(t, w.b, `service_uuid=${w.service}`), [old.uuid], 'and by service');
    await w.raw.delObject(INSTANCES, old.uuid);
    t.same(await listed(t, w.b, `server_uuid=${server}`), [], 'its delete (no tombstone) is in the next list');
    t.same(await listed(t, w.b, `service_uuid=${w.service}`), [], 'by service too');
    t.ok(mirrorOf(w.b).served.moray > 0, 'lists went to Moray once such a row was seen');
});

t.test('a delete the feed cannot see, of a row SAPI-TS wrote, is caught by the count beside the poll', async (t) => {
    const w = await world(t);
    const uuids = [randomUUID(), randomUUID()];
    const servers = [randomUUID(), randomUUID()];
    for (const [i, uuid] of uuids.entries()) {
        const r = await w.a.call('POST', '/instances', { body: { uuid, service_uuid: w.service, params: { server_uuid: servers[i] } } });
        t.equal(r.status, 200, r.text);
    }
    t.same(await listed(t, w.b, `service_uuid=${w.service}`), [...uuids].sort());
    // Removed behind every SAPI's back: no tombstone.
    await w.raw.delObject(INSTANCES, uuids[0] as string);
    t.same(await listed(t, w.b, `server_uuid=${servers[0]}`), [], 'not resurrected');
    t.same(await listed(t, w.b, `service_uuid=${w.service}`), [uuids[1]], 'in any list');
    // The cache is copied again and answers again.
    await current(w.b);
    const before = { ...mirrorOf(w.b).served };
    t.same(await listed(t, w.b, `service_uuid=${w.service}`), [uuids[1]]);
    t.ok(mirrorOf(w.b).served.mirror > before.mirror, 'answered from the cache again once copied');
    t.equal(mirrorOf(w.b).served.moray, before.moray);
});

t.test('the first GetConfig of an instance reads nothing from Moray once the cache is current', async (t) => {
    const w = await world(t);
    const uuid = randomUUID();
    const r = await w.a.call('POST', '/instances', { body: { uuid, service_uuid: w.service, params: { server_uuid: randomUUID() } } });
    t.equal(r.status, 200, r.text);
    // Until B's feed has seen it (the first poll after the write).
    const deadline = 2000;
    for (let i = 0; i < deadline && !mirrorOf(w.b).get(INSTANCES, uuid)?.value; i++) {
        await new Promise((res) => setTimeout(res, 10));
    }
    const gets = (): number => w.moray.requestsOf('getObject').filter((q) => q.args[0] === INSTANCES || q.args[0] === 'sapi_services').length;
    const n = gets();
    const cfg = await w.b.call('GET', `/configs/${uuid}`);
    t.equal(cfg.status, 200, cfg.text);
    t.equal(cfg.body.metadata.INSTANCE_UUID, uuid);
    t.equal(gets(), n, 'no getObject of the instance or its service');
});

t.test("an agent's registration reads its service and application as GetConfig does: not from Moray once the cache is current", async (t) => {
    const w = await world(t);
    // A service written through B is exact in B's next registration (its write drops what B kept).
    const image = randomUUID();
    const upd = await w.b.call('PUT', `/services/${w.service}`, { body: { action: 'update', params: { image_uuid: image } } });
    t.equal(upd.status, 200, upd.text);
    const first = await w.b.call('POST', '/instances', { body: { uuid: randomUUID(), service_uuid: w.service, params: { server_uuid: randomUUID() } } });
    t.equal(first.status, 200, first.text);
    t.equal(first.body.params.image_uuid, image, "the service's new image, at once");
    // Until B's feed has applied that write to its copy.
    for (
        let i = 0;
        i < 2000 && (mirrorOf(w.b).get<{ params?: { image_uuid?: string } }>('sapi_services', w.service)?.value?.params?.image_uuid ?? '') !== image;
        i++
    ) {
        await new Promise((res) => setTimeout(res, 10));
    }
    const parents = (): number => w.moray.requestsOf('getObject').filter((q) => q.args[0] === 'sapi_services' || q.args[0] === 'sapi_applications').length;
    const n = parents();
    for (let i = 0; i < 5; i++) {
        const r = await w.b.call('POST', '/instances', { body: { uuid: randomUUID(), service_uuid: w.service, params: { server_uuid: randomUUID() } } });
        t.equal(r.status, 200, r.text);
        t.equal(r.body.params.image_uuid, image);
    }
    t.ok(parents() - n <= 1, `at most one read of them from Moray for five registrations (${parents() - n})`);
});
