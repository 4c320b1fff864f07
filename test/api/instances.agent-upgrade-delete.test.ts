// Agent UpgradeInstance and DeleteInstance (v2, full mode) through CNAPI,
// one operation per server, and server cleanup (DELETE /servers/:uuid/instances
// forgets every agent instance of a deleted server, records only).

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { withIndexes } from '../../lib/model/instance-records.js';
import { agentWorld, type AgentWorld } from '../lib/agent-world.js';

async function installed(w: AgentWorld, name: string, server: string): Promise<{ uuid: string; params: Record<string, string> }> {
    const r = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc[name]?.uuid, params: { server_uuid: server } },
        version: '~2',
    });
    if (r.status !== 200) {
        throw new Error(r.text);
    }
    return r.body;
}

t.test('upgrade installs the new image; image_uuid changes only on success', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const inst = await installed(w, 'vm-agent', server);
    const img2 = w.newImage('vm-agent');
    const r = await w.h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: { image_uuid: img2 }, version: '~2' });
    t.equal(r.status, 200, r.text);
    t.equal(r.body.uuid, inst.uuid, 'same instance uuid');
    t.equal(r.body.params.image_uuid, img2);
    t.equal(w.cnapi.agentsOf(server).find((a) => a.name === 'vm-agent')?.image_uuid, img2);
    const found = await w.h.call('GET', `/instances?image_uuid=${img2}`, { version: '~2' });
    t.equal(found.body.length, 1);

    const img3 = w.newImage('vm-agent');
    w.cnapi.failNextTask('AgentInstall error: apm install failed');
    const bad = await w.h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: { image_uuid: img3 }, version: '~2' });
    t.equal(bad.status, 500);
    t.match(bad.body.message, /failed with error: AgentInstall error: apm install failed/);
    const after = await w.h.call('GET', `/instances/${inst.uuid}`, { version: '~2' });
    t.equal(after.body.params.image_uuid, img2, 'unchanged after a failed upgrade');

    const wrong = await w.h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: { image_uuid: w.svc['config-agent']?.image }, version: '~2' });
    t.equal(wrong.status, 409, 'an image of another agent is refused');
});

t.test('async upgrade answers at once with the CNAPI task id', async (t) => {
    const w = await agentWorld({ taskDurationMs: 200 });
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const inst = await installed(w, 'vm-agent', server);
    const img2 = w.newImage('vm-agent');
    const r = await w.h.call('PUT', `/instances/${inst.uuid}/upgrade?async=true`, { body: { image_uuid: img2 }, version: '~2' });
    t.equal(r.status, 200);
    t.ok(w.cnapi.state.tasks.has(r.body.job_uuid), 'job_uuid is the CNAPI task');
    t.not(r.body.params.image_uuid, img2, 'the image changes only when the task succeeds');
    // Until it lands (tap's timeout bounds the wait).
    for (;;) {
        const now = await w.h.call('GET', `/instances/${inst.uuid}`);
        if (now.body.params.image_uuid === img2) {
            t.pass('recorded after the task');
            return;
        }
        await new Promise((res) => setTimeout(res, 50));
    }
});

t.test('cn-agent upgrade waits for server.agents, not the task', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const srv = w.cnapi.addServer();
    const cn = w.cnapi.agentsOf(srv.uuid).find((a) => a.name === 'cn-agent');
    const adopt = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['cn-agent']?.uuid, uuid: cn?.uuid, exists: true, params: { server_uuid: srv.uuid } },
        version: '~2',
    });
    t.equal(adopt.status, 200);
    const img = w.newImage('cn-agent');
    const r = await w.h.call('PUT', `/instances/${cn?.uuid}/upgrade`, { body: { image_uuid: img }, version: '~2' });
    t.equal(r.status, 200, r.text);
    t.equal(r.body.params.image_uuid, img);
    t.equal(w.cnapi.agentsOf(srv.uuid).find((a) => a.name === 'cn-agent')?.image_uuid, img, 'server.agents shows the new cn-agent');
});

t.test('delete uninstalls by service name, then removes the record', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const inst = await installed(w, 'vm-agent', server);
    const r = await w.h.call('DELETE', `/instances/${inst.uuid}`, { version: '~2' });
    t.equal(r.status, 204, r.text);
    const calls = w.cnapi.requests.filter((q) => q.path === `/servers/${server}/uninstall-agents`);
    t.same(
        calls.map((c) => c.body),
        [{ agents: ['vm-agent'] }],
    );
    t.notOk(
        w.cnapi.agentsOf(server).some((a) => a.name === 'vm-agent'),
        'uninstalled',
    );
    t.equal((await w.h.call('GET', `/instances/${inst.uuid}`)).status, 404);
});

t.test('delete: agent absent or server gone → record only; cn-agent refused; old cn-agent 409', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    // a record for an agent the node does not have
    const rec = await w.h.call('POST', '/instances', { body: { service_uuid: w.svc['config-agent']?.uuid, params: { server_uuid: server } } });
    const r = await w.h.call('DELETE', `/instances/${rec.body.uuid}`, { version: '~2' });
    t.equal(r.status, 204);
    t.equal(w.cnapi.requests.filter((q) => q.path.endsWith('/uninstall-agents')).length, 0, 'nothing to uninstall');

    const gone = '00000000-0000-0000-0000-00000000dead';
    const orphan = await w.h.call('POST', '/instances', { body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: gone } } });
    t.equal((await w.h.call('DELETE', `/instances/${orphan.body.uuid}`, { version: '~2' })).status, 204, 'server unknown to CNAPI');

    const cn = w.cnapi.agentsOf(server).find((a) => a.name === 'cn-agent');
    await w.h.call('POST', '/instances', { body: { service_uuid: w.svc['cn-agent']?.uuid, uuid: cn?.uuid, params: { server_uuid: server } } });
    const no = await w.h.call('DELETE', `/instances/${cn?.uuid}`, { version: '~2' });
    t.equal(no.status, 409);
    t.match(no.body.message, /cn-agent is never uninstalled/);

    const old = w.cnapi.addServer({
        agents: [
            { name: 'cn-agent', version: '2.7.0', image_uuid: w.svc['cn-agent']?.image ?? '' },
            { name: 'vm-agent', version: '1.0.0', image_uuid: w.svc['vm-agent']?.image ?? '', uuid: '11111111-1111-4111-8111-111111111111' },
        ],
    });
    const oldRec = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, uuid: '11111111-1111-4111-8111-111111111111', params: { server_uuid: old.uuid } },
    });
    const o = await w.h.call('DELETE', `/instances/${oldRec.body.uuid}`, { version: '~2' });
    t.equal(o.status, 409);
    t.match(o.body.message, /require at least cn-agent v2\.8\.0/);
    t.equal((await w.h.call('GET', `/instances/${oldRec.body.uuid}`)).status, 200, 'record kept');
});

t.test('one agent operation per server; self-adoption is never blocked', async (t) => {
    // The first install holds the server until unhang(): SAPI's polls of its
    // task go unanswered (and its deadline is far off).
    const w = await agentWorld({ deploy: { taskDeadlineMs: 600_000 } });
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    w.cnapi.hang('GET /tasks/:id');
    let firstDone = false;
    const first = w.h
        .call('POST', '/instances', { body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } }, version: '~2' })
        .finally(() => (firstDone = true));
    // The lock is taken before CNAPI is asked to install.
    while (w.cnapi.requestsTo('POST /servers/:uuid/install-agent').length === 0) {
        await new Promise((r) => setTimeout(r, 10));
    }
    const second = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['config-agent']?.uuid, params: { server_uuid: server } },
        version: '~2',
    });
    t.equal(second.status, 409);
    t.equal(second.body.code, 'OperationInProgress');
    t.match(second.body.message, /install of vm-agent/);
    const adopt = await w.h.call('POST', '/instances', {
        body: {
            service_uuid: w.svc['config-agent']?.uuid,
            uuid: '22222222-2222-4222-8222-222222222222',
            params: { server_uuid: server, image_uuid: w.svc['config-agent']?.image },
        },
    });
    t.equal(adopt.status, 200, 'a postinstall adoption goes through while the server is busy');
    t.notOk(firstDone, 'without waiting for the install holding the server');
    w.cnapi.unhang();
    t.equal((await first).status, 200);
});

t.test('DELETE /servers/:uuid/instances forgets agent records only, idempotently', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const server = w.cnapi.addServer().uuid;
    const a = await installed(w, 'vm-agent', server);
    const b = await installed(w, 'config-agent', server);
    const vmSvc = await w.h.call('POST', '/services', { body: { name: 'imgapi', application_uuid: w.app }, version: '~2' });
    // a vm on the same server, recorded directly (no VMAPI in this world)
    const vm = { body: { uuid: randomUUID() } };
    await w.h.store.put('sapi_instances', withIndexes({ uuid: vm.body.uuid, service_uuid: vmSvc.body.uuid, type: 'vm', params: { server_uuid: server } }));
    const calls = w.cnapi.requests.length;

    const dry = await w.h.call('DELETE', `/servers/${server}/instances?dry_run=true`);
    t.equal(dry.status, 200);
    t.same(dry.body.deleted.sort(), [a.uuid, b.uuid].sort());
    t.equal((await w.h.call('GET', `/instances/${a.uuid}`)).status, 200, 'dry run deletes nothing');

    const r = await w.h.call('DELETE', `/servers/${server}/instances`);
    t.same(r.body, { server_uuid: server, deleted: r.body.deleted });
    t.same(r.body.deleted.sort(), [a.uuid, b.uuid].sort());
    t.equal(w.cnapi.requests.length, calls, 'no CNAPI call');
    t.equal((await w.h.call('GET', `/instances/${vm.body.uuid}`)).status, 200, 'vm instances untouched');
    const again = await w.h.call('DELETE', `/servers/${server}/instances`);
    t.same(again.body, { server_uuid: server, deleted: [] }, 'idempotent');
    const bad = await w.h.call('DELETE', '/servers/nope/instances');
    t.equal(bad.status, 409);
});
