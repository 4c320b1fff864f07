// Agent self-adoption: an agent's own v1 POST /instances always lands (never blocked by a server lock, never calling CNAPI), one instance per (service, server).

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, anAgentService, anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

/** What an agent's postinstall sends: no Accept-Version, only these fields. */
function adopt(h: Harness, service_uuid: string, uuid: string, server_uuid: string, image_uuid: string) {
    return h.call('POST', '/instances', { body: { service_uuid, uuid, params: { server_uuid, image_uuid } } });
}

t.test('the postinstall flow: find the agent service, adopt a new uuid → 200, v1 body', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid, 'vm-agent');

    const found = await h.call('GET', '/services?type=agent&name=vm-agent');
    t.equal(found.status, 200);
    t.equal(found.body.length, 1, 'a v1 client finds the agent service by asking for type=agent');
    t.equal(found.body[0].uuid, svc.uuid);

    const uuid = randomUUID();
    const server = randomUUID();
    const image = randomUUID();
    const r = await adopt(h, found.body[0].uuid, uuid, server, image);
    t.equal(r.status, 200);
    t.strictSame(r.body, { uuid, service_uuid: svc.uuid, params: { server_uuid: server, image_uuid: image } });
    t.equal((await h.call('GET', `/instances/${uuid}`, { version: '~2' })).body.type, 'agent');
});

t.test('re-adopting the same uuid is a 200 upsert: params from the body, metadata and manifests kept', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    const m = await aManifest(h);
    const uuid = randomUUID();
    const server = randomUUID();
    t.equal((await adopt(h, svc.uuid, uuid, server, randomUUID())).status, 200);
    const upd = await h.call('PUT', `/instances/${uuid}`, { body: { metadata: { LOG_LEVEL: 'debug' }, manifests: { agent: m.uuid } } });
    t.equal(upd.status, 200);

    const newImage = randomUUID();
    for (let i = 0; i < 2; i++) {
        const again = await adopt(h, svc.uuid, uuid, server, newImage);
        t.equal(again.status, 200, `adoption #${i + 2} succeeds`);
        t.strictSame(again.body, {
            uuid,
            service_uuid: svc.uuid,
            params: { server_uuid: server, image_uuid: newImage },
            metadata: { LOG_LEVEL: 'debug' },
            manifests: { agent: m.uuid },
        });
    }
    const list = await h.call('GET', `/instances?service_uuid=${svc.uuid}`);
    t.equal(list.body.length, 1, 'still exactly one instance');
});

t.test('a new uuid for the same (service, server) replaces the old instance, carrying its metadata', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    const m = await aManifest(h);
    const server = randomUUID();
    const oldUuid = randomUUID();
    t.equal((await adopt(h, svc.uuid, oldUuid, server, randomUUID())).status, 200);
    await h.call('PUT', `/instances/${oldUuid}`, { body: { metadata: { KEEP: 'me' }, manifests: { agent: m.uuid } } });

    const otherServer = randomUUID();
    const elsewhere = randomUUID();
    t.equal((await adopt(h, svc.uuid, elsewhere, otherServer, randomUUID())).status, 200, 'another server has its own instance');

    const newUuid = randomUUID();
    const image = randomUUID();
    const r = await adopt(h, svc.uuid, newUuid, server, image);
    t.equal(r.status, 200);
    t.strictSame(r.body, {
        uuid: newUuid,
        service_uuid: svc.uuid,
        params: { server_uuid: server, image_uuid: image },
        metadata: { KEEP: 'me' },
        manifests: { agent: m.uuid },
    });
    isError(t, await h.call('GET', `/instances/${oldUuid}`), 404, 'ResourceNotFound', `no such instance: ${oldUuid}`);
    const list = (await h.call('GET', `/instances?service_uuid=${svc.uuid}`)).body as { uuid: string; params: { server_uuid: string } }[];
    t.strictSame(
        list.filter((i) => i.params.server_uuid === server).map((i) => i.uuid),
        [newUuid],
        'exactly one instance on that server',
    );
    t.equal(list.length, 2, 'the other server keeps its instance');

    const cfg = await h.call('GET', `/configs/${newUuid}`);
    t.equal(cfg.status, 200, 'config-agent on the node can fetch the config of the new uuid');
    t.equal(cfg.body.metadata.KEEP, 'me');
    t.equal(cfg.body.metadata.INSTANCE_UUID, newUuid);
});

t.test('an agent without params.server_uuid: recorded unplaced when record-only, 409 when it would be installed', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    // What older agents' postinstall sends (before it passed server_uuid and image_uuid): no params, no Accept-Version.
    const uuid = randomUUID();
    const old = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid } });
    t.equal(old.status, 200, 'proto mode, v1: recorded');
    t.equal(old.body.uuid, uuid);
    t.notOk(old.body.params?.server_uuid, 'unplaced: no server');
    const again = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid } });
    t.equal(again.status, 200, 'the same request again is an upsert');
    t.equal((await h.call('GET', `/instances?service_uuid=${svc.uuid}`)).body.length, 1, 'one record');
    t.equal((await h.call('GET', `/configs/${uuid}`)).status, 200, 'config-agent can fetch its config');
    const v2proto = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid: randomUUID() }, version: '~2' });
    t.equal(v2proto.status, 200, 'proto mode, v2: record only, so recorded too');

    const full = await startSapi({ config: { mode: 'full' } });
    t.teardown(full.close);
    const fapp = await anApplication(full);
    const fsvc = await anAgentService(full, fapp.uuid);
    const r = await full.call('POST', '/instances', {
        body: { service_uuid: fsvc.uuid, uuid: randomUUID(), params: { image_uuid: randomUUID() } },
        version: '~2',
    });
    isError(t, r, 409, 'MissingParameter', /server_uuid/);
    t.strictSame((await full.call('GET', `/instances?service_uuid=${fsvc.uuid}`)).body, [], 'nothing was written');
    const v1full = await full.call('POST', '/instances', { body: { service_uuid: fsvc.uuid, uuid: randomUUID() } });
    t.equal(v1full.status, 200, 'full mode, v1 (an agent registering itself): recorded');
});

t.test('a duplicate uuid is still refused when it is not an agent instance of the same service', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const agentSvc = await anAgentService(h, app.uuid, 'vm-agent');
    const otherAgentSvc = await anAgentService(h, app.uuid, 'net-agent');
    const vmSvc = await aService(h, app.uuid);
    const vm = (await h.call('POST', '/instances', { body: { service_uuid: vmSvc.uuid } })).body;
    const server = randomUUID();
    const a = randomUUID();
    t.equal((await adopt(h, otherAgentSvc.uuid, a, server, randomUUID())).status, 200);

    isError(t, await adopt(h, agentSvc.uuid, vm.uuid, server, randomUUID()), 409, 'InvalidArgument', `instance already exists: ${vm.uuid}`);
    isError(t, await adopt(h, agentSvc.uuid, a, server, randomUUID()), 409, 'InvalidArgument', `instance already exists: ${a}`);
    t.strictSame((await h.call('GET', `/instances?service_uuid=${agentSvc.uuid}`)).body, [], 'nothing was written');
    t.strictSame((await h.call('GET', `/instances/${vm.uuid}`)).body, vm, 'the vm instance is untouched');
});

t.test('upgrading an agent instance never crashes: 200 with the instance unchanged (v1 and v2)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    const uuid = randomUUID();
    const inst = (await adopt(h, svc.uuid, uuid, randomUUID(), randomUUID())).body;

    const img1 = randomUUID();
    const v1 = await h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: img1 } });
    t.equal(v1.status, 200, 'v1: 200');
    t.match(v1.body, { uuid, service_uuid: svc.uuid, params: { server_uuid: inst.params.server_uuid } }, 'v1: the same instance');
    // Decision (issue 4: params.image_uuid is "kept current by UpgradeInstance"): a
    // non-deploying upgrade records the new image and changes nothing else.
    t.strictSame(v1.body, { ...inst, params: { ...inst.params, image_uuid: img1 } }, 'v1: only params.image_uuid follows the upgrade');
    const img2 = randomUUID();
    const v2 = await h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: img2 }, version: '~2' });
    t.equal(v2.status, 200, 'v2 (proto): 200');
    t.match(v2.body, { uuid, service_uuid: svc.uuid, type: 'agent', params: { server_uuid: inst.params.server_uuid } }, 'v2: the same instance');
    t.strictSame(v2.body, { ...inst, type: 'agent', params: { ...inst.params, image_uuid: img2 } }, 'v2: only params.image_uuid follows the upgrade');
    t.strictSame((await h.call('GET', `/instances/${uuid}`, { version: '~2' })).body, v2.body, 'the answer is the stored record');
    t.equal((await h.call('GET', '/ping')).status, 200, 'the server is still up');
});

t.test('agent instances: payload is {}, delete removes the record (204)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    const uuid = randomUUID();
    await adopt(h, svc.uuid, uuid, randomUUID(), randomUUID());
    const p = await h.call('GET', `/instances/${uuid}/payload`);
    t.equal(p.status, 200);
    t.strictSame(p.body, {});
    t.equal((await h.call('DELETE', `/instances/${uuid}`)).status, 204);
    t.equal((await h.call('GET', `/instances/${uuid}`)).status, 404);
});
