// Rollouts: many servers at a time, per-instance state, failures, a stall
// warning, a hard timeout, progress over REST, and resumption after a restart.
// Waits are on states, not on time: a task that must outlast others is held
// until the test has seen what it waits for.

import t from 'tap';

import { agentWorld, rolloutWhen, vmAgentServers, type AgentWorld } from '../lib/agent-world.js';
import { eventually } from './several-sapis.lib.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const waitDone = (w: AgentWorld, uuid: string): Promise<any> => rolloutWhen(w.h, uuid, (b) => b.state !== 'running');

t.test('a rollout where some servers fail and one stalls', async (t) => {
    const w = await agentWorld({ taskDurationMs: 40 });
    t.teardown(w.close);
    const servers = await vmAgentServers(w, 12);
    const img = w.newImage('vm-agent');
    // Two fail; one hangs until the stall warning has been seen.
    w.cnapi.planTaskOn(servers[9] as string, { fail: 'AgentInstall error: Unexpected file size (1 vs 2)' });
    w.cnapi.planTaskOn(servers[10] as string, { fail: 'AgentInstall error: Unexpected file size (1 vs 2)' });
    w.cnapi.planTaskOn(servers[11] as string, 'hang');
    const r = await w.h.call('POST', '/rollouts', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: img, concurrency: 4, stall_factor: 3, stall_min_finished: 3 },
        version: '~2',
    });
    t.equal(r.status, 200, r.text);
    t.equal(r.body.items.length, 12);
    t.equal(r.body.concurrency, 4);
    const mid = await w.h.call('GET', `/rollouts/${r.body.uuid}`);
    t.equal(mid.status, 200, 'progress is readable while it runs');
    const stalled = await rolloutWhen(w.h, r.body.uuid, (b) => b.warnings.some((m: string) => /over 3x the average/.test(m)));
    t.match(
        stalled.warnings.find((m: string) => /over 3x the average/.test(m)),
        `on server ${servers[11]} has run`,
        'a stall warning naming the held server',
    );
    t.equal(stalled.items.find((i: { server_uuid: string }) => i.server_uuid === servers[11]).state, 'stalled');
    t.equal(stalled.state, 'running', 'a stall is a warning: the rollout goes on');
    w.cnapi.releaseHungTasks();
    const done = await waitDone(w, r.body.uuid);
    t.equal(done.state, 'failed');
    t.equal(done.counts.failed, 2, 'two failed tasks');
    t.equal(done.counts.succeeded, 10, 'the stalled one finished once its task did');
    t.ok(done.average_ms > 0, `average ${done.average_ms} ms`);
    const failed = done.items.filter((i: { state: string }) => i.state === 'failed');
    t.ok(
        failed.every((i: { error: string }) => /Unexpected file size/.test(i.error)),
        'task errors kept per instance',
    );
    for (const item of done.items) {
        t.ok(item.started_at && item.finished_at, 'start and end times');
    }
    const upgraded = await w.h.call('GET', `/instances?image_uuid=${img}`, { version: '~2' });
    t.equal(upgraded.body.length, 10, 'succeeded instances carry the new image');
});

t.test('an instance over instance_timeout_ms fails; the others go on', async (t) => {
    const w = await agentWorld({ taskDurationMs: 40 });
    t.teardown(w.close);
    const servers = await vmAgentServers(w, 3);
    const img = w.newImage('vm-agent');
    // Its task never ends: only the timeout ends its item.
    w.cnapi.planTaskOn(servers[2] as string, 'hang');
    const r = await w.h.call('POST', '/rollouts', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: img, concurrency: 3, instance_timeout_ms: 1500 },
        version: '~2',
    });
    t.equal(r.status, 200, r.text);
    const done = await waitDone(w, r.body.uuid);
    t.equal(done.state, 'failed');
    t.same(done.counts, { pending: 0, running: 0, succeeded: 2, failed: 1, stalled: 0, canceled: 0 });
    const late = done.items.find((i: { server_uuid: string }) => i.server_uuid === servers[2]);
    t.match(late.error, new RegExp(`^instance ${late.instance_uuid} on server ${servers[2]} timed out after 1\\.5s$`), 'hard timeout per instance');
    t.ok(late.duration_ms >= 1500, `not before the timeout (${late.duration_ms} ms)`);
    const upgraded = await w.h.call('GET', `/instances?image_uuid=${img}`, { version: '~2' });
    t.equal(upgraded.body.length, 2, 'the others carry the new image');
});

t.test('rollout input errors', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    let r = await w.h.call('POST', '/rollouts', { body: {} });
    t.equal(r.status, 409);
    t.equal(r.body.code, 'MissingParameter');
    r = await w.h.call('POST', '/rollouts', { body: { service_uuid: 'x', image_uuid: w.newImage('vm-agent') } });
    t.equal(r.status, 409);
    r = await w.h.call('POST', '/rollouts', { body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.newImage('vm-agent'), concurrency: 0 } });
    t.equal(r.status, 409);
    r = await w.h.call('GET', '/rollouts/00000000-0000-0000-0000-000000000000');
    t.equal(r.status, 404);
    r = await w.h.call('POST', '/rollouts', { body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.svc['config-agent']?.image } });
    t.equal(r.status, 409, 'an image of another agent is refused before anything starts');
    t.match(r.body.message, /not an image of agent vm-agent/);
    r = await w.h.call('POST', '/rollouts', { body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: '00000000-0000-0000-0000-0000000000ff' } });
    t.equal(r.status, 409);
    t.match(r.body.message, /not found in the local IMGAPI/);
});

t.test('a rollout interrupted by a restart resumes', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 150, deploy: { taskDeadlineMs: 5000 }, keepDir: true });
    t.teardown(w.close);
    const { cnapi } = w;
    await vmAgentServers(w, 6);
    const r = await w.h.call('POST', '/rollouts', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.newImage('vm-agent'), concurrency: 2 },
        version: '~2',
    });
    // Interrupted mid-way: once an item has started, task polls go unanswered
    // so this SAPI cannot finish the rollout before it is stopped.
    if (!(await eventually(async () => cnapi.requestsTo('POST /servers/:uuid/install-agent').length > 0, 60_000, 10))) throw new Error('no item started');
    cnapi.hang('GET /tasks/:id');
    await w.restart();
    cnapi.unhang();
    const body = await waitDone(w, r.body.uuid);
    t.equal(body.state, 'succeeded');
    t.equal(body.counts.succeeded, 6);
    t.ok(
        body.warnings.some((m: string) => /resumed after a restart/.test(m)),
        'clearly marked as resumed',
    );
});

t.test('a cn-agent rollout and a vm-agent rollout never run on one server at once', async (t) => {
    const w = await agentWorld({ taskDurationMs: 60 });
    t.teardown(w.close);
    const servers = await vmAgentServers(w, 4);
    // Record each server's cn-agent in SAPI (the adoption path, as on a real DC).
    for (const s of servers) {
        const cn = w.cnapi.agentsOf(s).find((a) => a.name === 'cn-agent');
        await w.h.call('POST', '/instances', {
            body: { service_uuid: w.svc['cn-agent']?.uuid, uuid: cn?.uuid, params: { server_uuid: s, image_uuid: cn?.image_uuid } },
        });
    }
    const cnImg = w.newImage('cn-agent');
    const vmImg = w.newImage('vm-agent');
    const [a, b] = await Promise.all([
        w.h.call('POST', '/rollouts', { body: { service_uuid: w.svc['cn-agent']?.uuid, image_uuid: cnImg, concurrency: 4 } }),
        w.h.call('POST', '/rollouts', { body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: vmImg, concurrency: 4 } }),
    ]);
    const doneA = await waitDone(w, a.body.uuid);
    const doneB = await waitDone(w, b.body.uuid);
    t.equal(doneA.state, 'succeeded', JSON.stringify(doneA.counts));
    t.equal(doneB.state, 'succeeded', JSON.stringify(doneB.counts));
    for (const s of servers) {
        const tasks = [...w.cnapi.state.tasks.values()]
            .filter((task) => task.server_uuid === s && task.task === 'agent_install')
            .map((task) => ({ start: Date.parse(task.timestamp), end: Date.parse(String(task.history?.[0]?.timestamp)) }))
            .sort((x, y) => x.start - y.start);
        for (let i = 1; i < tasks.length; i++) {
            t.ok((tasks[i]?.start ?? 0) >= (tasks[i - 1]?.end ?? 0), `server ${s}: task ${i} started after task ${i - 1} ended`);
        }
    }
});

t.test('servers that cannot take an upgrade fail at once, with the reason', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const servers = await vmAgentServers(w, 3);
    const down = w.cnapi.state.servers.get(servers[1] as string);
    if (down) down.status = 'unknown';
    const img = w.newImage('vm-agent');
    const installs = (): number => w.cnapi.requests.filter((q) => q.path === `/servers/${servers[1]}/install-agent`).length;
    const before = installs();
    const r = await w.h.call('POST', '/rollouts', { body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: img } });
    t.equal(r.status, 200);
    const failedAtStart = r.body.items.filter((i: { state: string }) => i.state === 'failed');
    t.equal(failedAtStart.length, 1);
    t.match(failedAtStart[0].error, /is not running \(status: unknown\)/);
    const done = await waitDone(w, r.body.uuid);
    t.equal(done.counts.succeeded, 2);
    t.equal(done.counts.failed, 1);
    t.equal(installs(), before, 'no install attempted there');
});
