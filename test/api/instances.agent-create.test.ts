// Agent CreateInstance (v2, full mode) installs through CNAPI → cn-agent,
// waits for the task, and leaves exactly one instance per (service, server)
// with the uuid the node reports, even though the agent adopts itself
// during the install.

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';

t.test('install on a server: one instance, the node uuid, server.agents consistent', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const r = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } },
        version: '~2',
    });
    t.equal(r.status, 200, r.text);
    const entry = w.cnapi.agentsOf(server).find((a) => a.name === 'vm-agent');
    t.ok(entry, 'installed on the node');
    t.equal(r.body.uuid, entry?.uuid, 'the node uuid wins');
    t.equal(r.body.type, 'agent');
    t.equal(r.body.params.server_uuid, server);
    t.equal(r.body.params.image_uuid, w.svc['vm-agent']?.image);
    const installs = w.cnapi.requests.filter((q) => q.method === 'POST' && q.path === `/servers/${server}/install-agent`);
    t.equal(installs.length, 1);
    t.same(installs[0]?.body, { image_uuid: w.svc['vm-agent']?.image });
    t.ok(
        w.cnapi.state.adoptions.some((a) => a.ok),
        'the agent adopted itself during the task',
    );
    const list = await w.h.call('GET', `/instances?service_uuid=${w.svc['vm-agent']?.uuid}&server_uuid=${server}`, { version: '~2' });
    t.equal(list.body.length, 1, 'exactly one instance for (service, server)');

    const again = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } },
        version: '~2',
    });
    t.equal(again.status, 200);
    t.equal(again.body.uuid, r.body.uuid, 'a second create answers the existing instance');
    t.equal(w.cnapi.requests.filter((q) => q.path === `/servers/${server}/install-agent`).length, 1, 'no second install');

    const otherImage = w.newImage('vm-agent');
    const conflicting = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server, image_uuid: otherImage } },
        version: '~2',
    });
    t.equal(conflicting.status, 409, 'a create at another image is not an upgrade in disguise');
    t.equal(conflicting.body.code, 'InstanceExists');
    t.match(conflicting.body.message, /use UpgradeInstance/);
});

t.test('v1 adoption with exists: true is checked against server.agents in full mode', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const srv = w.cnapi.addServer();
    const r = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, uuid: '33333333-3333-4333-8333-333333333333', exists: true, params: { server_uuid: srv.uuid } },
    });
    t.equal(r.status, 409);
    t.match(r.body.message, /vm-agent is not installed on server/);
    t.equal(w.cnapi.requests.filter((q) => q.path.endsWith('/install-agent')).length, 0, 'never deploys');
});

t.test('an agent without a uuid file (no adoption) still gets one record', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    w.cnapi.noUuidFile = true;
    const server = w.cnapi.addServer().uuid;
    const r = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } },
        version: '~2',
    });
    t.equal(r.status, 200, r.text);
    const list = await w.h.call('GET', `/instances?server_uuid=${server}`, { version: '~2' });
    t.same(
        list.body.map((i: { uuid: string }) => i.uuid),
        [r.body.uuid],
    );
});

t.test('async create returns the task id at once; the instance appears after', async (t) => {
    const w = await agentWorld({ taskDurationMs: 200 });
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const r = await w.h.call('POST', '/instances?async=true', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } },
        version: '~2',
    });
    t.equal(r.status, 200);
    t.ok(r.body.job_uuid, 'the CNAPI task id');
    t.ok(w.cnapi.state.tasks.has(r.body.job_uuid));
    // Until it appears (tap's timeout bounds the wait).
    for (;;) {
        const list = await w.h.call('GET', `/instances?server_uuid=${server}`, { version: '~2' });
        if (list.body.length === 1 && w.cnapi.state.tasks.get(r.body.job_uuid)?.status === 'complete') {
            t.pass('recorded after the task');
            return;
        }
        await new Promise((res) => setTimeout(res, 50));
    }
});

t.test('v1 requests and proto mode only record (the postinstall path)', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const r = await w.h.call('POST', '/instances', { body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } } });
    t.equal(r.status, 200);
    t.equal(w.cnapi.requests.filter((q) => q.path.endsWith('/install-agent')).length, 0, 'no CNAPI install for a v1 request');
});

t.test('adoption (exists: true) checks server.agents', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const srv = w.cnapi.addServer();
    const cn = w.cnapi.agentsOf(srv.uuid).find((a) => a.name === 'cn-agent');
    const ok = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['cn-agent']?.uuid, uuid: cn?.uuid, exists: true, params: { server_uuid: srv.uuid } },
        version: '~2',
    });
    t.equal(ok.status, 200, ok.text);
    t.equal(ok.body.params.image_uuid, cn?.image_uuid, 'image from server.agents');
    const missing = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, uuid: cn?.uuid, exists: true, params: { server_uuid: srv.uuid } },
        version: '~2',
    });
    t.equal(missing.status, 409);
    t.match(missing.body.message, /vm-agent is not installed on server/);
});

t.test('server and image checks fail clearly, writing nothing and installing nothing', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const svc = w.svc['vm-agent']?.uuid;
    const create = (server: string, params: Record<string, unknown> = {}) =>
        w.h.call('POST', '/instances', { body: { service_uuid: svc, params: { server_uuid: server, ...params } }, version: '~2' });

    const unknown = '00000000-0000-0000-0000-000000000001';
    let r = await create(unknown);
    t.equal(r.status, 404);
    t.match(r.body.message, unknown);
    const unsetup = w.cnapi.addServer({ setup: false }).uuid;
    r = await create(unsetup);
    t.equal(r.status, 409);
    t.equal(r.body.code, 'ServerNotSetup');
    t.match(r.body.message, unsetup);
    const down = w.cnapi.addServer({ status: 'unknown' }).uuid;
    r = await create(down);
    t.equal(r.status, 409);
    t.equal(r.body.code, 'ServerNotRunning');
    t.match(r.body.message, /status: unknown/);
    const ok = w.cnapi.addServer().uuid;
    r = await create(ok, { image_uuid: '00000000-0000-0000-0000-0000000000aa' });
    t.equal(r.status, 409);
    t.match(r.body.message, /image 00000000-0000-0000-0000-0000000000aa not found in the local IMGAPI/);
    r = await create(ok, { image_uuid: w.svc['config-agent']?.image });
    t.equal(r.status, 409);
    t.match(r.body.message, /not an image of agent vm-agent/);
    const disabled = w.imgapi.addImage({ name: 'vm-agent', state: 'disabled' }).uuid;
    r = await create(ok, { image_uuid: disabled });
    t.equal(r.status, 409);
    t.match(r.body.message, /not active/);
    t.equal(w.cnapi.requests.filter((q) => q.path.endsWith('/install-agent')).length, 0, 'nothing installed');
    const list = await w.h.call('GET', '/instances?type=agent', { version: '~2' });
    t.same(list.body, [], 'nothing recorded');
});

t.test('task failure, timeout, lost task and CNAPI down leave no record', async (t) => {
    const w = await agentWorld({ deploy: { taskDeadlineMs: 300 } });
    t.teardown(w.close);
    const svc = w.svc['vm-agent']?.uuid;
    const create = (server: string) => w.h.call('POST', '/instances', { body: { service_uuid: svc, params: { server_uuid: server } }, version: '~2' });

    const s1 = w.cnapi.addServer().uuid;
    w.cnapi.failNextTask('AgentInstall error: sha1 does not match');
    let r = await create(s1);
    t.equal(r.status, 500);
    t.equal(r.body.code, 'AgentTaskFailedError');
    t.match(r.body.message, /Task [0-9a-f-]+ failed with error: AgentInstall error: sha1 does not match/);
    t.match(r.body.message, s1);

    const s2 = w.cnapi.addServer().uuid;
    w.cnapi.hangNextTask();
    r = await create(s2);
    t.equal(r.status, 504);
    t.equal(r.body.code, 'TaskTimeoutError');
    t.match(r.body.message, s2);
    t.match(r.body.message, /timed out/);

    const s3 = w.cnapi.addServer().uuid;
    await w.cnapi.down();
    r = await create(s3);
    t.equal(r.status, 503);
    t.equal(r.body.code, 'DownstreamError');
    t.match(r.body.message, /CNAPI/);
    await w.cnapi.up();

    for (const s of [s1, s2, s3]) {
        const list = await w.h.call('GET', `/instances?server_uuid=${s}`, { version: '~2' });
        t.same(list.body, [], `no record on ${s}`);
    }
});
