// Plans that install what a server lacks (install_missing), against the
// fake CNAPI: a server with only cn-agent gets every agent service,
// config-agent and agents_core first and never two tasks at once there; an
// agent CNAPI lists but SAPI does not record is adopted without a task;
// servers that cannot take installs are skipped with the reason; a re-run
// installs nothing; a failing install pauses per max_failures, and a
// revert uninstalls what the plan installed.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { agentWorld, rolloutWhen, type AgentWorld } from '../lib/agent-world.js';
import type { Harness } from '../lib/harness.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

const AGENTS = ['cn-agent', 'config-agent', 'agents_core', 'net-agent', 'vm-agent', 'amon-agent'];
const FINAL = ['succeeded', 'failed', 'canceled', 'reverted'];
const waitDone = (h: Harness, uuid: string): Promise<Body> => rolloutWhen(h, uuid, (b: Body) => FINAL.includes(b.state));

async function post(h: Harness, path: string, body?: Record<string, unknown>): Promise<{ status: number; body: Body; text: string }> {
    return h.call('POST', path, { ...(body ? { body } : {}), version: '~2' });
}

/** A freshly set-up server: only cn-agent (new enough to uninstall), unknown to SAPI. */
function newServer(w: AgentWorld, more: { name: string; image_uuid: string }[] = []): string {
    return w.cnapi.addServer({
        agents: [
            { name: 'cn-agent', version: '2.13.0', image_uuid: w.svc['cn-agent']?.image as string, uuid: randomUUID() },
            ...more.map((a) => ({ ...a, version: '1.0.0', uuid: randomUUID() })),
        ],
    }).uuid;
}

/** The tasks run on a server, in order: the agent (by image) and the task kind, with start and end. */
function tasksOn(w: AgentWorld, server: string): { agent: string; task: string; start: number; end: number }[] {
    const names = new Map(Object.entries(w.svc).map(([n, s]) => [s.image, n]));
    return [...w.cnapi.state.tasks.values()]
        .filter((task) => task.server_uuid === server)
        .map((task) => {
            const params = w.cnapi.state.taskLog.find((l) => l.id === task.id)?.params ?? {};
            const image = typeof params['image_uuid'] === 'string' ? params['image_uuid'] : '';
            const uninstalled = Array.isArray(params['agents']) ? String((params['agents'] as unknown[])[0]) : '';
            return {
                agent: names.get(image) ?? uninstalled,
                task: task.task,
                start: Date.parse(task.timestamp),
                end: Date.parse(String(task.history?.at(-1)?.timestamp)),
            };
        })
        .sort((x, y) => x.start - y.start);
}

async function instancesOn(h: Harness, server: string): Promise<Body[]> {
    return (await h.call('GET', `/instances?server_uuid=${server}`, { version: '~2' })).body;
}

t.test('a server with only cn-agent gets every agent: config-agent and agents_core first, one task at a time', async (t) => {
    const w = await agentWorld({ agents: AGENTS, taskDurationMs: 15 });
    t.teardown(w.close);
    const server = newServer(w);
    const plan = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, servers: [server], dry_run: true });
    t.equal(plan.status, 200, plan.text);
    t.same(
        plan.body.items.map((i: Body) => [i.service_name, i.action]),
        [
            ['config-agent', 'install'],
            ['agents_core', 'install'],
            ['amon-agent', 'install'],
            ['net-agent', 'install'],
            ['vm-agent', 'install'],
            ['cn-agent', 'adopt'],
        ],
        'the preview: foundation agents first, cn-agent (already there) adopted last',
    );
    t.equal(tasksOn(w, server).length, 0, 'the preview ran nothing');

    const r = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, servers: [server], concurrency: 5 });
    t.equal(r.status, 200, r.text);
    const done = await waitDone(w.h, r.body.uuid);
    t.equal(done.state, 'succeeded', JSON.stringify(done.items.map((i: Body) => [i.service_name, i.state, i.error])));
    const tasks = tasksOn(w, server);
    t.same(
        tasks.map((x) => x.agent),
        ['config-agent', 'agents_core', 'amon-agent', 'net-agent', 'vm-agent'],
        'installs in order; no task for cn-agent',
    );
    for (let i = 1; i < tasks.length; i++) {
        t.ok((tasks[i]?.start ?? 0) >= (tasks[i - 1]?.end ?? 0), `task ${i} started after task ${i - 1} ended`);
    }
    const recorded = await instancesOn(w.h, server);
    t.same(recorded.map((i: Body) => i.service_uuid).sort(), AGENTS.map((n) => w.svc[n]?.uuid).sort(), 'every agent service has its instance there');
    t.ok(
        recorded.every((i: Body) => i.params.image_uuid === w.svc[AGENTS.find((n) => w.svc[n]?.uuid === i.service_uuid) as string]?.image),
        'each at its service image',
    );

    // A re-run installs nothing.
    const again = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, servers: [server] });
    t.equal(again.status, 200, again.text);
    t.equal(again.body.state, 'succeeded');
    t.ok(
        again.body.items.every((i: Body) => i.state === 'skipped'),
        'every item already at its target',
    );
    t.equal(tasksOn(w, server).length, tasks.length, 'no new task');
});

t.test('an agent CNAPI lists but SAPI does not record is adopted without a task; servers that cannot take installs are skipped', async (t) => {
    const w = await agentWorld({ agents: ['cn-agent', 'config-agent', 'net-agent'], taskDurationMs: 10 });
    t.teardown(w.close);
    const withNet = newServer(w, [{ name: 'net-agent', image_uuid: w.svc['net-agent']?.image as string }]);
    const down = newServer(w);
    const srv = w.cnapi.state.servers.get(down);
    if (srv) srv.status = 'unknown';
    const noCnAgent = w.cnapi.addServer({ agents: [] }).uuid;
    const r = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, servers: [withNet, down, noCnAgent] });
    t.equal(r.status, 200, r.text);
    t.same(
        r.body.skipped_servers,
        [
            { server_uuid: down, reason: 'not running (status: unknown)' },
            { server_uuid: noCnAgent, reason: 'cn-agent is not installed there (CN setup installs it; a plan never does)' },
        ],
        'the skipped servers and why',
    );
    const done = await waitDone(w.h, r.body.uuid);
    t.equal(done.state, 'succeeded');
    t.same(
        done.items.map((i: Body) => [i.service_name, i.action, i.state]),
        [
            ['config-agent', 'install', 'succeeded'],
            ['net-agent', 'adopt', 'succeeded'],
            ['cn-agent', 'adopt', 'succeeded'],
        ],
    );
    t.same(
        tasksOn(w, withNet).map((x) => x.agent),
        ['config-agent'],
        'net-agent adopted: no task',
    );
    t.equal(tasksOn(w, down).length + tasksOn(w, noCnAgent).length, 0, 'nothing on the skipped servers');
    const net = (await instancesOn(w.h, withNet)).find((i: Body) => i.service_uuid === w.svc['net-agent']?.uuid);
    t.equal(net?.params.image_uuid, w.svc['net-agent']?.image, 'recorded at the image CNAPI reports');

    const nothing = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, servers: [down] });
    t.equal(nothing.status, 409);
    t.match(nothing.body.message, /nothing to roll out: no server can take .* \(.*: not running \(status: unknown\)\)/);
    const bad = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, instances: [randomUUID()] });
    t.equal(bad.status, 409);
    t.match(bad.body.message, /install_missing goes with servers, not instances/);
});

t.test('a failing install pauses per max_failures; a revert uninstalls what the plan installed', async (t) => {
    const w = await agentWorld({ agents: ['cn-agent', 'config-agent', 'net-agent', 'vm-agent'], taskDurationMs: 10 });
    t.teardown(w.close);
    const a = newServer(w);
    const b = newServer(w);
    // On b, the second install (net-agent) fails.
    w.cnapi.planTaskOn(b, { fail: 'AgentInstall error: no space left on device' });
    w.cnapi.planTaskOn(b, { fail: 'AgentInstall error: no space left on device' });
    const r = await post(w.h, '/rollouts', { all_agents: true, install_missing: true, servers: [a, b], concurrency: 1, max_failures: 1 });
    t.equal(r.status, 200, r.text);
    const paused = await rolloutWhen(w.h, r.body.uuid, (x: Body) => x.state === 'paused' || FINAL.includes(x.state));
    t.equal(paused.state, 'paused');
    t.equal(paused.paused_reason, 'failures');
    const installedOnA = (await instancesOn(w.h, a)).filter((i: Body) => i.service_uuid !== w.svc['cn-agent']?.uuid).length;
    t.equal(installedOnA, 3, 'server a got its three agents');

    const rev = await post(w.h, `/rollouts/${r.body.uuid}/revert`);
    t.equal(rev.status, 200, rev.text);
    const reverted = await waitDone(w.h, r.body.uuid);
    t.equal(
        reverted.state,
        'reverted',
        JSON.stringify(reverted.items.filter((i: Body) => i.phase === 'revert').map((i: Body) => [i.action, i.state, i.error])),
    );
    const uninstalls = reverted.items.filter((i: Body) => i.phase === 'revert');
    t.ok(uninstalls.length >= 3 && uninstalls.every((i: Body) => i.action === 'uninstall'), 'every install is reverted by an uninstall');
    t.same(
        (await instancesOn(w.h, a)).map((i: Body) => i.service_uuid),
        [w.svc['cn-agent']?.uuid],
        'server a is back to cn-agent alone in SAPI',
    );
    t.same(
        w.cnapi.agentsOf(a).map((x) => x.name),
        ['cn-agent'],
        'and on the CN',
    );
    t.ok(
        tasksOn(w, a).some((x) => x.task === 'agents_uninstall'),
        'through uninstall tasks',
    );
});
