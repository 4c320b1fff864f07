// Multi-agent rollout plans against the fake CNAPI: exclusions, per-server
// ordering (one task at a time per server, cn-agent last), skipping agents
// already at their image, canaries (promote, automatic promotion), the
// failure threshold (count and percentage), resume, revert, a restart in
// the middle of a plan, and input errors. Waits are on states, not on time.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { StoreLeases } from '../../lib/leases/leases.js';
import { agentWorld, rolloutWhen, type AgentWorld } from '../lib/agent-world.js';
import { startFakeCnapi } from '../lib/fake-cnapi.js';
import { startFakeImgapi } from '../lib/fake-imgapi.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';
import { eventually } from './several-sapis.lib.js';

const AGENTS = ['cn-agent', 'config-agent', 'net-agent', 'vm-agent'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

/** Servers with every agent of the world installed at its service's image, recorded in SAPI (records only). */
async function withServers(w: AgentWorld, n: number): Promise<string[]> {
    const servers: string[] = [];
    for (let i = 0; i < n; i++) {
        const agents = Object.entries(w.svc).map(([name, s]) => ({ name, version: '1.0.0', image_uuid: s.image, uuid: randomUUID() }));
        const server = w.cnapi.addServer({ agents }).uuid;
        for (const a of agents) {
            const r = await w.h.call('POST', '/instances', {
                body: { service_uuid: w.svc[a.name]?.uuid, uuid: a.uuid, params: { server_uuid: server, image_uuid: a.image_uuid } },
            });
            if (r.status !== 200) throw new Error(r.text);
        }
        servers.push(server);
    }
    return servers;
}

const FINAL = ['succeeded', 'failed', 'canceled', 'reverted'];

/** Poll `cond` until it holds (at most a minute). */
async function until(cond: () => boolean): Promise<void> {
    if (!(await eventually(async () => cond(), 60_000, 10))) throw new Error(`never held: ${cond.toString()}`);
}
const waitDone = (h: Harness, uuid: string): Promise<Body> => rolloutWhen(h, uuid, (b: Body) => FINAL.includes(b.state));

async function post(h: Harness, path: string, body?: Record<string, unknown>): Promise<{ status: number; body: Body; text: string }> {
    return h.call('POST', path, { ...(body ? { body } : {}), version: '~2' });
}

/** A new image for each named agent, set as its service's params.image_uuid. */
async function newImages(w: AgentWorld, names: string[]): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const name of names) {
        out[name] = w.newImage(name, `2.0.${Object.keys(out).length}-${randomUUID().slice(0, 4)}`);
        const r = await w.h.call('PUT', `/services/${w.svc[name]?.uuid}`, { body: { action: 'update', params: { image_uuid: out[name] } } });
        if (r.status !== 200) throw new Error(r.text);
    }
    return out;
}

/** agent_install tasks on a server, in order: name (by image), submitted, ended. */
function tasksOn(w: AgentWorld, server: string, names: Map<string, string>): { name: string; image: string; start: number; end: number }[] {
    return [...w.cnapi.state.tasks.values()]
        .filter((task) => task.server_uuid === server && task.task === 'agent_install')
        .map((task) => {
            const image = String(w.cnapi.state.taskLog.find((l) => l.id === task.id)?.params['image_uuid']);
            return { name: names.get(image) ?? '?', image, start: Date.parse(task.timestamp), end: Date.parse(String(task.history?.at(-1)?.timestamp)) };
        })
        .sort((x, y) => x.start - y.start);
}

t.test('all agents but an excluded one: one task at a time per server, cn-agent last, current agents skipped', async (t) => {
    const w = await agentWorld({ agents: AGENTS, taskDurationMs: 30 });
    t.teardown(w.close);
    const servers = await withServers(w, 3);
    const img = await newImages(w, ['cn-agent', 'config-agent', 'vm-agent']);
    const names = new Map(Object.entries(img).map(([n, i]) => [i, n]));
    // vm-agent on the last server is already at the target image (a re-run after a failure).
    const s2 = servers[2] as string;
    const agents = w.cnapi.agentsOf(s2).map((a) => (a.name === 'vm-agent' ? { ...a, image_uuid: img['vm-agent'] as string } : a));
    const srv = w.cnapi.state.servers.get(s2);
    if (srv) srv.agents = agents;
    w.cnapi.setNodeAgents(s2, agents);

    const r = await post(w.h, '/rollouts', { all_agents: true, exclude_services: ['net-agent'], concurrency: 3 });
    t.equal(r.status, 200, r.text);
    t.notOk(r.body.service_uuid, 'no single service');
    t.same(
        r.body.services.map((s: Body) => s.service_name),
        ['config-agent', 'vm-agent', 'cn-agent'],
        'net-agent excluded; cn-agent last',
    );
    t.equal(r.body.items.length, 9, 'three agents on three servers');
    t.equal(r.body.totals.servers, 3);
    t.notOk(
        r.body.items.some((i: Body) => i.service_name === 'net-agent'),
        'no net-agent item',
    );
    const skipped = r.body.items.filter((i: Body) => i.state === 'skipped');
    t.equal(skipped.length, 1, 'one item already at its image');
    t.match(skipped[0], { server_uuid: s2, service_name: 'vm-agent', to_image: img['vm-agent'], from_image: w.svc['vm-agent']?.image });
    t.equal(r.body.counts.skipped, 1);
    t.same(
        r.body.servers.map((s: Body) => s.items.map((i: Body) => i.service_name)),
        servers.map(() => ['config-agent', 'vm-agent', 'cn-agent']),
        'grouped by server, in the per-server order',
    );

    const done = await waitDone(w.h, r.body.uuid);
    t.equal(done.state, 'succeeded', JSON.stringify(done.counts));
    t.match(done.totals, { servers: 3, servers_done: 3, items: 9, succeeded: 8, failed: 0, skipped: 1 });
    t.ok(
        done.servers.every((s: Body) => s.state === 'succeeded'),
        'every server succeeded',
    );
    for (const item of done.items.filter((i: Body) => i.state === 'succeeded')) {
        t.equal(item.from_image, w.svc[item.service_name]?.image, `${item.service_name} from_image recorded`);
    }
    for (const s of servers) {
        const tasks = tasksOn(w, s, names);
        t.same(
            tasks.map((x) => x.name),
            s === s2 ? ['config-agent', 'cn-agent'] : ['config-agent', 'vm-agent', 'cn-agent'],
            `server ${s}: agents in order, the current one not installed again`,
        );
        for (let i = 1; i < tasks.length; i++) {
            t.ok((tasks[i]?.start ?? 0) >= (tasks[i - 1]?.end ?? Infinity), `server ${s}: ${tasks[i]?.name} submitted after ${tasks[i - 1]?.name} ended`);
        }
    }
    const net = await w.h.call('GET', `/instances?service_uuid=${w.svc['net-agent']?.uuid}`, { version: '~2' });
    t.ok(
        net.body.every((i: Body) => i.params.image_uuid === w.svc['net-agent']?.image),
        'net-agent untouched',
    );
    const list = await w.h.call('GET', `/rollouts?service_uuid=${w.svc['vm-agent']?.uuid}`);
    t.equal(list.body.length, 1, 'listed under each planned service');
});

t.test('canaries: paused until promoted; automatic promotion once they succeeded', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 20 });
    t.teardown(w.close);
    const servers = await withServers(w, 4);
    const img = await newImages(w, ['vm-agent']);
    const r = await post(w.h, '/rollouts', { services: [{ service_uuid: w.svc['vm-agent']?.uuid }], canary: 1, concurrency: 4 });
    t.equal(r.status, 200, r.text);
    t.equal(r.body.services[0].image_uuid, img['vm-agent'], "the image defaults to the service's");
    t.equal(r.body.items.filter((i: Body) => i.phase === 'canary').length, 1);
    t.equal(r.body.items[0].server_uuid, servers[0], 'the first server is the canary');
    const paused = await rolloutWhen(w.h, r.body.uuid, (b) => b.state !== 'running');
    t.match(paused, { state: 'paused', paused_reason: 'canary' });
    t.same(
        paused.items.map((i: Body) => i.state),
        ['succeeded', 'pending', 'pending', 'pending'],
    );
    let bad = await post(w.h, `/rollouts/${r.body.uuid}/revert`);
    t.equal(bad.status, 200, 'revert is allowed while paused');
    t.equal(bad.body.state, 'reverting');
    const reverted = await waitDone(w.h, r.body.uuid);
    t.equal(reverted.state, 'reverted');
    bad = await post(w.h, `/rollouts/${r.body.uuid}/promote`);
    t.equal(bad.status, 409, 'a reverted rollout cannot be promoted');
    t.equal(bad.body.code, 'InvalidArgument');
    t.match(bad.body.message, /is reverted and cannot be promoted/);

    // Again, promoted by hand this time.
    const r2 = await post(w.h, '/rollouts', { services: [{ service_uuid: w.svc['vm-agent']?.uuid }], canary: 2, concurrency: 4 });
    t.equal(r2.status, 200, r2.text);
    await rolloutWhen(w.h, r2.body.uuid, (b) => b.state === 'paused');
    bad = await post(w.h, `/rollouts/${r2.body.uuid}/resume`);
    t.equal(bad.status, 200, 'resume from a canary pause promotes');
    const done2 = await waitDone(w.h, r2.body.uuid);
    t.equal(done2.state, 'succeeded');
    t.ok(done2.promoted_at, 'promoted_at recorded');

    // And automatically.
    const img3 = w.newImage('vm-agent', '3.0.0');
    const r3 = await post(w.h, '/rollouts', {
        services: [{ service_uuid: w.svc['vm-agent']?.uuid, image_uuid: img3 }],
        canary: 2,
        auto_promote_after_ms: 50,
        concurrency: 4,
    });
    t.equal(r3.status, 200, r3.text);
    const done3 = await waitDone(w.h, r3.body.uuid);
    t.equal(done3.state, 'succeeded', JSON.stringify(done3.counts));
    t.ok(done3.promoted_at, 'promoted by itself');
    const canaryEnd = Math.max(...done3.items.filter((i: Body) => i.phase === 'canary').map((i: Body) => Date.parse(i.finished_at)));
    const mainStart = Math.min(...done3.items.filter((i: Body) => i.phase === 'main').map((i: Body) => Date.parse(i.started_at)));
    t.ok(mainStart >= canaryEnd, 'the other servers started after the canaries ended');
    t.ok(Date.parse(done3.promoted_at) - canaryEnd >= 40, 'after the delay');
    bad = await post(w.h, `/rollouts/${r3.body.uuid}/promote`);
    t.equal(bad.status, 409, 'a finished rollout cannot be promoted');
});

t.test('max_failures pauses the rollout; resume goes on; a percentage works too', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 20 });
    t.teardown(w.close);
    const servers = await withServers(w, 5);
    const img = await newImages(w, ['vm-agent']);
    w.cnapi.planTaskOn(servers[0] as string, { fail: 'AgentInstall error: boom' });
    w.cnapi.planTaskOn(servers[1] as string, { fail: 'AgentInstall error: boom' });
    w.cnapi.planTaskOn(servers[3] as string, { fail: 'AgentInstall error: boom' });
    const svc = w.svc['vm-agent']?.uuid;
    const r = await post(w.h, '/rollouts', { services: [{ service_uuid: svc }], concurrency: 1, max_failures: 2 });
    t.equal(r.status, 200, r.text);
    const paused = await rolloutWhen(w.h, r.body.uuid, (b) => b.state !== 'running');
    t.match(paused, { state: 'paused', paused_reason: 'failures' });
    t.same(
        paused.items.map((i: Body) => i.state),
        ['failed', 'failed', 'pending', 'pending', 'pending'],
        'nothing started after the threshold',
    );
    t.ok(
        paused.warnings.some((m: string) => /reached max_failures 2/.test(m)),
        'said why',
    );
    const promote = await post(w.h, `/rollouts/${r.body.uuid}/promote`);
    t.equal(promote.status, 409, 'not paused for canaries');
    const resumed = await post(w.h, `/rollouts/${r.body.uuid}/resume`);
    t.equal(resumed.status, 200, resumed.text);
    t.equal(resumed.body.state, 'running');
    const done = await waitDone(w.h, r.body.uuid);
    t.equal(done.state, 'failed', 'one more failure after resume is under the threshold');
    t.same(
        done.items.map((i: Body) => i.state),
        ['failed', 'failed', 'succeeded', 'failed', 'succeeded'],
    );
    const again = await post(w.h, `/rollouts/${r.body.uuid}/resume`);
    t.equal(again.status, 409);
    t.match(again.body.message, /is failed and cannot be resumed/);

    // Re-running the plan continues where it stopped: only the failed servers get a task.
    const before = w.cnapi.state.taskLog.length;
    w.cnapi.planTaskOn(servers[0] as string, { fail: 'AgentInstall error: boom' });
    const rerun = await post(w.h, '/rollouts', { services: [{ service_uuid: svc }], concurrency: 2, max_failures: '25%' });
    t.equal(rerun.status, 200, rerun.text);
    t.equal(rerun.body.counts.skipped, 2, 'the two upgraded servers are skipped');
    const p2 = await rolloutWhen(w.h, rerun.body.uuid, (b) => b.state !== 'running');
    t.match(p2, { state: 'paused', paused_reason: 'failures' }, '25% of 3 items to run: one failure pauses');
    t.ok(w.cnapi.state.taskLog.length - before <= 2, 'running items finished, nothing new started');
    const canceled = await w.h.call('DELETE', `/rollouts/${rerun.body.uuid}`);
    t.equal(canceled.status, 200);
    t.equal(canceled.body.state, 'canceled', 'a paused rollout is canceled at once');
    t.equal(canceled.body.counts.pending, 0);
    t.ok(img['vm-agent']);
});

t.test('revert puts back the previous images; a running rollout reverts once its running items end', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent', 'config-agent'], taskDurationMs: 20 });
    t.teardown(w.close);
    const servers = await withServers(w, 3);
    const old = { 'vm-agent': w.svc['vm-agent']?.image, 'config-agent': w.svc['config-agent']?.image };
    await newImages(w, ['vm-agent', 'config-agent']);
    const r = await post(w.h, '/rollouts', { all_agents: true, concurrency: 3 });
    t.equal(r.status, 200, r.text);
    const done = await waitDone(w.h, r.body.uuid);
    t.equal(done.state, 'succeeded');
    const rv = await post(w.h, `/rollouts/${r.body.uuid}/revert`);
    t.equal(rv.status, 200, rv.text);
    t.equal(rv.body.state, 'reverting');
    const reverted = await waitDone(w.h, r.body.uuid);
    t.equal(reverted.state, 'reverted', JSON.stringify(reverted.counts));
    const back = reverted.items.filter((i: Body) => i.phase === 'revert');
    t.equal(back.length, 6, 'one revert item per upgraded agent');
    t.ok(
        back.every((i: Body) => i.state === 'succeeded'),
        'all reverted',
    );
    for (const s of servers) {
        for (const a of w.cnapi.agentsOf(s).filter((x) => x.name !== 'cn-agent')) {
            t.equal(a.image_uuid, old[a.name as 'vm-agent'], `server ${s}: ${a.name} back at its previous image`);
        }
    }
    const insts = await w.h.call('GET', `/instances?service_uuid=${w.svc['vm-agent']?.uuid}`, { version: '~2' });
    t.ok(
        insts.body.every((i: Body) => i.params.image_uuid === old['vm-agent']),
        'SAPI records follow',
    );
    const twice = await post(w.h, `/rollouts/${r.body.uuid}/revert`);
    t.equal(twice.status, 409, 'reverted once only');

    // While running: the running item ends, the pending ones never start, then it is reverted.
    const img = w.newImage('vm-agent', '9.0.0');
    w.cnapi.planTaskOn(servers[0] as string, 'hang');
    const r2 = await post(w.h, '/rollouts', { services: [{ service_uuid: w.svc['vm-agent']?.uuid, image_uuid: img }], concurrency: 1 });
    await rolloutWhen(w.h, r2.body.uuid, (b) => b.items[0].state === 'running');
    const rv2 = await post(w.h, `/rollouts/${r2.body.uuid}/revert`);
    t.equal(rv2.status, 200, rv2.text);
    t.equal(rv2.body.state, 'reverting', 'reverting at once');
    t.same(
        rv2.body.items.map((i: Body) => i.state),
        ['running', 'canceled', 'canceled'],
    );
    w.cnapi.releaseHungTasks();
    const r2done = await waitDone(w.h, r2.body.uuid);
    t.equal(r2done.state, 'reverted');
    t.match(r2done.items.at(-1), { phase: 'revert', server_uuid: servers[0], from_image: img, to_image: old['vm-agent'], state: 'succeeded' });
    t.equal(w.cnapi.agentsOf(servers[0] as string).find((a) => a.name === 'vm-agent')?.image_uuid, old['vm-agent']);
});

t.test('a restart in the middle of a plan runs no finished item again; a paused rollout stays paused', async (t) => {
    const w = await agentWorld({ agents: ['config-agent', 'vm-agent'], taskDurationMs: 60, deploy: { taskDeadlineMs: 5000 }, keepDir: true });
    t.teardown(w.close);
    const { cnapi } = w;
    await withServers(w, 4);
    const services = Object.entries(w.svc).map(([name, s]) => ({ service_uuid: s.uuid, image_uuid: w.newImage(name, '2.0.0') }));
    const r = await w.h.call('POST', '/rollouts', { body: { services, concurrency: 1 }, version: '~2' });
    t.equal(r.status, 200, r.text);
    // Interrupted once a few items have finished: task polls go unanswered,
    // and once the one worker waits on its task (it can send nothing more),
    // SAPI stops; that task still completes on the node.
    await until(() => [...cnapi.state.tasks.values()].filter((task) => task.status === 'complete').length >= 3);
    const seen = cnapi.requests.length;
    cnapi.hang('GET /tasks/:id');
    const polled = (): boolean => {
        const last = cnapi.state.taskLog.at(-1)?.id;
        return cnapi.requests.slice(seen).some((q) => q.routeKey === 'GET /tasks/:id' && q.path === `/tasks/${String(last)}`);
    };
    await until(polled);
    const key = (l: { server_uuid: string; params: Record<string, unknown> }): string => `${l.server_uuid}/${String(l.params['image_uuid'])}`;
    const finishedBefore = new Set(cnapi.state.taskLog.filter((l) => cnapi.state.tasks.get(l.id)?.status === 'complete').map(key));
    w.h.app.rollouts.stop();
    await w.restart(() => cnapi.idle());
    cnapi.unhang();
    const done = await waitDone(w.h, r.body.uuid);
    t.equal(done.state, 'succeeded', JSON.stringify(done.counts));
    t.equal(done.totals.succeeded, 8);
    t.ok(
        done.warnings.some((m: string) => /resumed after a restart/.test(m)),
        'marked as resumed',
    );
    const installs = new Map<string, number>();
    for (const l of cnapi.state.taskLog) {
        installs.set(key(l), (installs.get(key(l)) ?? 0) + 1);
    }
    t.equal(installs.size, 8, 'every (server, agent) upgraded');
    t.ok(finishedBefore.size >= 3, `${finishedBefore.size} finished before the restart`);
    // (The task interrupted by the restart may run again: its adoption into the stopped SAPI can fail.)
    t.same(
        [...finishedBefore].map((k) => installs.get(k)),
        [...finishedBefore].map(() => 1),
        'none that had finished ran again',
    );

    // A rollout paused for its canaries is still paused after a restart, and can be promoted then.
    const more = Object.entries(w.svc).map(([name, s]) => ({ service_uuid: s.uuid, image_uuid: w.newImage(name, '3.0.0') }));
    const p = await w.h.call('POST', '/rollouts', { body: { services: more, canary: 1, concurrency: 2 }, version: '~2' });
    t.equal(p.status, 200, p.text);
    await rolloutWhen(w.h, p.body.uuid, (b) => b.state === 'paused');
    await w.restart();
    await w.h.app.rollouts.resumeAll();
    const still = (await w.h.call('GET', `/rollouts/${p.body.uuid}`)).body;
    t.match(still, { state: 'paused', paused_reason: 'canary' });
    t.equal(still.counts.pending, 6, 'nothing started');
    const promoted = await w.h.call('POST', `/rollouts/${p.body.uuid}/promote`, { version: '~2' });
    t.equal(promoted.status, 200, promoted.text);
    const pdone = await waitDone(w.h, p.body.uuid);
    t.equal(pdone.state, 'succeeded');
});

t.test('plan input errors', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent', 'config-agent'] });
    t.teardown(w.close);
    const vm = w.svc['vm-agent']?.uuid;
    const bare = await aService(w.h, w.app, { name: 'amon-agent', type: 'agent' });
    const vmSvc = await aService(w.h, w.app, { name: 'imgapi', type: 'vm', params: { image_uuid: randomUUID() } });
    const cases: [Record<string, unknown>, string, RegExp][] = [
        [{}, 'MissingParameter', /missing required keys: service_uuid, image_uuid/],
        [{ service_uuid: vm }, 'MissingParameter', /missing required keys: image_uuid/],
        [{ service_uuid: vm, image_uuid: w.newImage('vm-agent'), all_agents: true }, 'InvalidArgument', /exactly one of/],
        [{ services: [{ service_uuid: vm }], all_agents: true }, 'InvalidArgument', /exactly one of/],
        [{ services: [] }, 'InvalidArgument', /services must be a non-empty list/],
        [{ services: [{ service_uuid: vm }], image_uuid: w.newImage('vm-agent') }, 'InvalidArgument', /image_uuid goes with service_uuid/],
        [{ service_uuid: vm, image_uuid: w.newImage('vm-agent'), exclude_services: ['x'] }, 'InvalidArgument', /exclude_services goes with/],
        [{ all_agents: true, exclude_services: ['marlin-agent'] }, 'InvalidArgument', /no agent service named or with uuid "marlin-agent"/],
        [{ all_agents: true, exclude_services: ['vm-agent', 'config-agent', 'amon-agent'] }, 'InvalidArgument', /nothing to roll out/],
        [{ all_agents: true }, 'InvalidArgument', new RegExp(`service amon-agent \\(${String(bare.uuid)}\\) has no params.image_uuid`)],
        [{ services: [{ service_uuid: vmSvc.uuid }] }, 'InvalidArgument', /service imgapi is not an agent service/],
        [{ services: [{ service_uuid: vm }, { service_uuid: vm }] }, 'InvalidArgument', /given twice/],
        [{ services: [{ service_uuid: vm }], max_failures: '0%' }, 'InvalidArgument', /max_failures must be a count/],
        [{ services: [{ service_uuid: vm }], max_failures: 'many' }, 'InvalidArgument', /max_failures must be a count/],
        [{ services: [{ service_uuid: vm }], canary: 0 }, 'InvalidArgument', /canary must be an integer of at least 1/],
        [{ services: [{ service_uuid: vm }], auto_promote_after_ms: 10 }, 'InvalidArgument', /auto_promote_after_ms goes with canary/],
        [{ services: [{ service_uuid: vm, image_uuid: w.svc['config-agent']?.image }] }, 'InvalidArgument', /not an image of agent vm-agent/],
    ];
    for (const [body, code, message] of cases) {
        const r = await post(w.h, '/rollouts', body);
        t.equal(r.status, 409, JSON.stringify(body));
        t.equal(r.body.code, code, JSON.stringify(body));
        t.match(r.body.message, message, JSON.stringify(body));
    }
    const missing = await post(w.h, '/rollouts', { services: [{ service_uuid: '00000000-0000-0000-0000-0000000000aa' }] });
    t.equal(missing.status, 404);
    for (const verb of ['promote', 'resume', 'revert']) {
        const r = await post(w.h, `/rollouts/00000000-0000-0000-0000-000000000000/${verb}`);
        t.equal(r.status, 404, verb);
        t.equal(r.body.code, 'ResourceNotFound');
    }
    // Query-string form: lists comma-separated, numbers and flags as text
    // (on a server with the agents: a plan that matches nothing is refused).
    await withServers(w, 1);
    const q = await w.h.call('POST', `/rollouts?all_agents=true&exclude_services=amon-agent,config-agent&max_failures=3&canary=1`, { version: '~2' });
    t.equal(q.status, 200, q.text);
    t.same(
        q.body.services.map((s: Body) => s.service_name),
        ['vm-agent'],
    );
    t.equal(q.body.max_failures, 3);
    await w.h.app.rollouts.idle();
});

t.test('a rollout whose lease is lost starts no more items; it is taken over once the lease is free', async (t) => {
    const imgapi = await startFakeImgapi();
    const cnapi = await startFakeCnapi({ taskDurationMs: 30, imgapi: { url: imgapi.url }, adoptDuringInstall: true, adoptIntervalMs: 20 });
    const config = {
        mode: 'full',
        lease_ttl_ms: 300,
        cnapi: { url: cnapi.url },
        imgapi: { url: imgapi.url },
        deploy: { taskPollIntervalMs: 10, taskDeadlineMs: 5000 },
    };
    const h = await startSapi({ config });
    t.teardown(async () => {
        await h.close();
        await cnapi.close();
        await imgapi.close();
    });
    cnapi.sapiUrl = h.url;
    const app = await anApplication(h);
    const from = imgapi.addImage({ name: 'vm-agent', version: '1.0.0' }).uuid;
    const svc = (await aService(h, app.uuid, { name: 'vm-agent', type: 'agent', params: { image_uuid: from } })).uuid;
    const servers: string[] = [];
    for (let i = 0; i < 3; i++) {
        const uuid = randomUUID();
        const s = cnapi.addServer({ agents: [{ name: 'vm-agent', version: '1.0.0', image_uuid: from, uuid }] }).uuid;
        await h.call('POST', '/instances', { body: { service_uuid: svc, uuid, params: { server_uuid: s, image_uuid: from } } });
        servers.push(s);
    }
    const to = imgapi.addImage({ name: 'vm-agent', version: '2.0.0' }).uuid;
    cnapi.planTaskOn(servers[0] as string, 'hang');
    const r = await post(h, '/rollouts', { service_uuid: svc, image_uuid: to, concurrency: 1 });
    t.equal(r.status, 200, r.text);
    t.equal(r.body.owner, h.app.leases.owner, 'owned by this SAPI');
    await rolloutWhen(h, r.body.uuid, (b) => b.items[0].state === 'running');
    // Another SAPI takes the lease over (as it may once it believes it expired).
    if (!(h.app.leases instanceof StoreLeases)) throw new Error('leases are kept in a store');
    const backend = h.app.leases.backend;
    const key = `rollout/${r.body.uuid}`;
    const cur = await backend.get(key);
    if (!cur) throw new Error('no lease record');
    let etag = await backend.put({ ...cur.record, owner: 'another-sapi', expires_at: new Date(Date.now() + 60_000).toISOString() }, cur.etag);
    // This SAPI notices at its next renewal (seen here on its driver); the running item then ends, and no other starts.
    await until(() => h.app.rollouts.driving(r.body.uuid)?.leaseLost === true);
    const driver = h.app.rollouts.driving(r.body.uuid);
    cnapi.releaseHungTasks();
    await cnapi.idle();
    // Once the driver has let go, nothing here can start an item until the lease is free again.
    await driver?.done;
    t.equal(cnapi.requestsTo('POST /servers/:uuid/install-agent').length, 1, 'no item started without the lease');
    // The other SAPI goes away: its lease ends, and this one takes the rollout over.
    const held = await backend.get(key);
    if (held) etag = held.etag;
    await backend.del(key, etag);
    const done = await waitDone(h, r.body.uuid);
    t.equal(done.state, 'succeeded', JSON.stringify(done.counts));
    t.ok(
        done.warnings.some((m: string) => /taken over from/.test(m)),
        'marked as taken over',
    );
    t.equal(cnapi.requestsTo('POST /servers/:uuid/install-agent').length, 3, 'the item that ended unseen was not run again');
});
