// ListInstances filters: service_uuid, application_uuid, type, server_uuid,
// image_uuid, in any combination; malformed values are 4xx, not [].

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

interface World {
    h: Harness;
    app: string;
    app2: string;
    vmSvc: string;
    agentSvc: string;
    otherAppSvc: string;
    servers: string[];
    images: string[];
}

async function world(): Promise<World> {
    const h = await startSapi();
    const app = (await anApplication(h)).uuid as string;
    const app2 = (await anApplication(h, { name: 'manta' })).uuid as string;
    const images = [randomUUID(), randomUUID()];
    const servers = [randomUUID(), randomUUID(), randomUUID()];
    const vmSvc = (await aService(h, app, { name: 'vmapi', params: { image_uuid: images[0] } })).uuid as string;
    const agentSvc = (await aService(h, app, { name: 'vm-agent', type: 'agent', params: { image_uuid: images[0] } })).uuid as string;
    const otherAppSvc = (await aService(h, app2, { name: 'moray', params: { image_uuid: images[1] } })).uuid as string;
    const post = async (body: Record<string, unknown>): Promise<void> => {
        const r = await h.call('POST', '/instances', { body, version: '~2' });
        if (r.status !== 200) {
            throw new Error(r.text);
        }
    };
    // vm instances: 2 on server 0 (one upgraded image), 1 on server 1.
    await post({ service_uuid: vmSvc, params: { server_uuid: servers[0] } });
    await post({ service_uuid: vmSvc, params: { server_uuid: servers[0], image_uuid: images[1] } });
    await post({ service_uuid: vmSvc, params: { server_uuid: servers[1] } });
    // one agent per server
    for (const s of servers) {
        await post({ service_uuid: agentSvc, params: { server_uuid: s } });
    }
    await post({ service_uuid: otherAppSvc, params: { server_uuid: servers[2] } });
    return { h, app, app2, vmSvc, agentSvc, otherAppSvc, servers, images };
}

const uuids = (body: { uuid: string }[]): string[] => body.map((i) => i.uuid).sort();

t.test('each filter alone and combined (AND), v2 view', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    const q = async (qs: string): Promise<{ params: Record<string, string>; service_uuid: string; type: string }[]> => {
        const r = await w.h.call('GET', `/instances?${qs}`, { version: '~2' });
        t.equal(r.status, 200, qs);
        t.equal(r.headers.get('x-joyent-resource-count'), String(r.body.length), `count header for ${qs}`);
        return r.body;
    };
    t.equal((await q('')).length, 7, 'everything');
    t.equal((await q(`service_uuid=${w.vmSvc}`)).length, 3);
    t.equal((await q('type=agent')).length, 3);
    t.equal((await q('type=vm')).length, 4);
    const onS0 = await q(`server_uuid=${w.servers[0]}`);
    t.equal(onS0.length, 3, 'two vms and an agent on server 0');
    t.ok(onS0.every((i) => i.params.server_uuid === w.servers[0]));
    t.equal((await q(`image_uuid=${w.images[1]}`)).length, 2, 'the upgraded vm and the manta instance');
    t.equal((await q(`application_uuid=${w.app2}`)).length, 1);
    t.equal((await q(`application_uuid=${w.app}`)).length, 6);
    t.equal((await q(`service_uuid=${w.vmSvc}&image_uuid=${w.images[0]}`)).length, 2);
    t.equal((await q(`server_uuid=${w.servers[0]}&type=agent`)).length, 1);
    t.equal((await q(`server_uuid=${w.servers[2]}&application_uuid=${w.app}`)).length, 1);
    t.equal((await q(`service_uuid=${w.agentSvc}&server_uuid=${w.servers[1]}&image_uuid=${w.images[0]}&type=agent`)).length, 1);
    t.equal((await q(`service_uuid=${w.agentSvc}&type=vm`)).length, 0, 'v2 ANDs service_uuid with type');
    t.equal((await q(`server_uuid=${randomUUID()}`)).length, 0, 'unknown server: empty list');
    t.equal((await q(`name=&server_uuid=`)).length, 7, 'empty values are ignored');
});

t.test('v1 view keeps 2.1.2 semantics on top of the new filters', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    const r = await w.h.call('GET', `/instances?server_uuid=${w.servers[0]}`);
    t.equal(r.status, 200);
    t.equal(r.body.length, 2, 'implicit type=vm');
    t.notOk('type' in r.body[0], 'no type in v1');
    const bySvc = await w.h.call('GET', `/instances?service_uuid=${w.agentSvc}&type=vm`);
    t.equal(bySvc.body.length, 3, 'v1 drops the type filter with a service_uuid');
});

t.test('malformed filter values are 409 InvalidArgument, not an empty list', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    for (const qs of [
        'server_uuid=nope',
        'image_uuid=1234',
        'service_uuid=x',
        'application_uuid=%27%29',
        'type=zone',
        'limit=0',
        'limit=1001',
        'limit=abc',
        'marker=not-a-uuid',
    ]) {
        const r = await w.h.call('GET', `/instances?${qs}`, { version: '~2' });
        t.equal(r.status, 409, qs);
        t.equal(r.body.code, 'InvalidArgument', qs);
        t.type(r.body.message, 'string');
    }
});

t.test('image_uuid defaults from the merged params and follows UpgradeInstance', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const img1 = randomUUID();
    const img2 = randomUUID();
    const app = await anApplication(h, { params: { image_uuid: img1 } });
    const svc = await aService(h, app.uuid);
    const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid }, version: '~2' });
    t.equal(r.body.params.image_uuid, img1, 'from the application');
    const svc2 = await aService(h, app.uuid, { params: { image_uuid: img2 } });
    const r2 = await h.call('POST', '/instances', { body: { service_uuid: svc2.uuid }, version: '~2' });
    t.equal(r2.body.params.image_uuid, img2, 'the service wins over the application');

    const up = await h.call('PUT', `/instances/${r.body.uuid}/upgrade`, { body: { image_uuid: img2 }, version: '~2' });
    t.equal(up.status, 200);
    t.equal(up.body.params.image_uuid, img2);
    const found = await h.call('GET', `/instances?image_uuid=${img2}`, { version: '~2' });
    t.same(uuids(found.body), [r.body.uuid, r2.body.uuid].sort(), 'the index follows the upgrade');

    const bad = await h.call('PUT', `/instances/${r.body.uuid}/upgrade`, { body: { image_uuid: 'latest' }, version: '~2' });
    t.equal(bad.status, 409);
    t.equal(bad.body.message, 'image_uuid must be a UUID');
    const badParams = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, params: { image_uuid: 'x' } } });
    t.equal(badParams.status, 409);
    t.equal(badParams.body.message, 'params.image_uuid must be a UUID');
});

t.test('agent instances that would be installed need params.server_uuid', async (t) => {
    const h = await startSapi({ config: { mode: 'full' } });
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid, { name: 'cmon-agent', type: 'agent', params: { image_uuid: randomUUID() } });
    const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid }, version: '~2' });
    t.equal(r.status, 409);
    t.same(r.body, { code: 'MissingParameter', message: 'missing required keys: params.server_uuid' });
    const bad = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, params: { server_uuid: 'headnode' } } });
    t.equal(bad.status, 409);
    t.equal(bad.body.message, 'params.server_uuid must be a UUID');
    const list = await h.call('GET', '/instances', { version: '~2' });
    t.same(list.body, [], 'nothing written');
});

t.test('full mode requires an image_uuid in the merged params', async (t) => {
    const h = await startSapi({ config: { mode: 'full' } });
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid }, version: '~2' });
    t.equal(r.status, 409);
    t.same(r.body, { code: 'MissingParameter', message: 'missing required keys: params.image_uuid' });
});
