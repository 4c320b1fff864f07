// Every log record SAPI writes carries the logger's name, "sapi": a record's
// own fields never replace it (bunyan writes fields over `name`, so no call
// site may log a field called `name`). Checked on every record, at trace
// level, through an agent install, an agent removal and a rollout with a
// failed item.

import bunyan from 'bunyan';
import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';

interface LogRecord {
    name: string;
    msg: string;
    component?: string;
    agent?: string;
    [key: string]: unknown;
}

t.test("every record of an agent install, removal and rollout is named 'sapi'", async (t) => {
    const records: LogRecord[] = [];
    const log = bunyan.createLogger({
        name: 'sapi',
        serializers: bunyan.stdSerializers,
        streams: [{ type: 'raw', level: 'trace', stream: { write: (rec: object) => void records.push(rec as LogRecord) } }],
    });
    const w = await agentWorld({ log });
    t.teardown(w.close);
    const vmAgent = w.svc['vm-agent'] as { uuid: string; image: string };

    // An install through CNAPI, the agent adopting itself meanwhile.
    const servers = [w.cnapi.addServer().uuid, w.cnapi.addServer().uuid, w.cnapi.addServer().uuid];
    for (const server of servers) {
        const r = await w.h.call('POST', '/instances', { body: { service_uuid: vmAgent.uuid, params: { server_uuid: server } }, version: '~2' });
        t.equal(r.status, 200, 'installed', { body: r.text });
    }

    // A rollout with one failing item.
    w.cnapi.planTaskOn(servers[1] as string, { fail: 'AgentInstall error: Unexpected file size (1 vs 2)' });
    const ro = await w.h.call('POST', '/rollouts', { body: { service_uuid: vmAgent.uuid, image_uuid: w.newImage('vm-agent'), concurrency: 2 }, version: '~2' });
    t.equal(ro.status, 200, 'rollout started', { body: ro.text });
    await w.h.app.rollouts.idle();
    const done = await w.h.call('GET', `/rollouts/${ro.body.uuid as string}`, { version: '~2' });
    t.equal(done.body.state, 'failed', 'the rollout ran to its end');

    // A removal where the server no longer has the agent: the record only.
    const gone = w.cnapi.addServer().uuid;
    const inst = await w.h.call('POST', '/instances', { body: { service_uuid: vmAgent.uuid, params: { server_uuid: gone } }, version: '~2' });
    t.equal(inst.status, 200);
    w.cnapi.state.servers.get(gone)!.agents = [];
    const del = await w.h.call('DELETE', `/instances/${inst.body.uuid as string}`, { version: '~2' });
    t.equal(del.status, 204, 'removed', { body: del.text });

    const msgs = records.map((r) => r.msg);
    for (const m of ['agent install started', 'rollout started', 'rollout item failed', 'rollout finished', 'agent not installed: removing the record only']) {
        t.ok(msgs.includes(m), `logged: ${m}`);
    }
    const install = records.find((r) => r.msg === 'agent install started');
    t.equal(install?.agent, 'vm-agent', 'the agent is named in its own field');
    const misnamed = records.filter((r) => r.name !== 'sapi');
    t.same(
        misnamed.map((r) => ({ name: r.name, msg: r.msg })),
        [],
        `all ${records.length} records are named 'sapi'`,
    );
});
