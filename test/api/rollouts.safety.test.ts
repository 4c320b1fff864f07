// Rollouts an operator can trust, against the fake CNAPI and IMGAPI: new
// routes refuse unknown keys (naming the closest known one); a dry run
// answers the plan and starts nothing, and the run then does what it said;
// a plan that matches no instance is refused; a plan with nothing to
// upgrade ends at once as such; an agent newer than the target is never
// downgraded unless asked; the rollout list pages summaries; outcome
// counters keep what happened between two scrapes. Also the smaller
// answers: paging limits, offset, HEAD /ping, the one-way mode switch.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { agentWorld, rolloutWhen, type AgentWorld } from '../lib/agent-world.js';
import type { Harness } from '../lib/harness.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

const FINAL = ['succeeded', 'failed', 'canceled', 'reverted'];
const waitDone = (h: Harness, uuid: string): Promise<Body> => rolloutWhen(h, uuid, (b: Body) => FINAL.includes(b.state));

async function post(h: Harness, path: string, body?: Record<string, unknown>): Promise<{ status: number; body: Body; text: string }> {
    return h.call('POST', path, { ...(body ? { body } : {}), version: '~2' });
}

/** `n` servers whose vm-agent, at `version` with the service's image, is recorded in SAPI. */
async function vmAgents(w: AgentWorld, n: number, version = '1.0.0'): Promise<string[]> {
    const servers: string[] = [];
    const image = w.svc['vm-agent']?.image as string;
    for (let i = 0; i < n; i++) {
        const uuid = randomUUID();
        const server = w.cnapi.addServer({
            agents: [
                { name: 'cn-agent', version: '2.13.0', image_uuid: randomUUID(), uuid: randomUUID() },
                { name: 'vm-agent', version, image_uuid: image, uuid },
            ],
        }).uuid;
        const r = await w.h.call('POST', '/instances', {
            body: { service_uuid: w.svc['vm-agent']?.uuid, uuid, params: { server_uuid: server, image_uuid: image } },
        });
        if (r.status !== 200) throw new Error(r.text);
        servers.push(server);
    }
    return servers;
}

const installs = (w: AgentWorld): number => w.cnapi.requests.filter((q) => /\/install-agent$/.test(q.path) || q.path.includes('/tasks')).length;

t.test('new routes refuse unknown keys, naming the closest known one', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'] });
    t.teardown(w.close);
    await vmAgents(w, 1);
    const svc = w.svc['vm-agent']?.uuid as string;
    const rollout = (await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: w.newImage('vm-agent') })).body.uuid as string;
    await waitDone(w.h, rollout);
    const cases: [string, string, Record<string, unknown> | undefined, RegExp][] = [
        ['POST', '/rollouts', { services: [{ service_uuid: svc }], concurency: 3 }, /unknown parameter "concurency" \(did you mean "concurrency"\?\)/],
        ['POST', '/rollouts', { all_agents: true, parms: {} }, /unknown parameter "parms"/],
        ['POST', '/rollouts?dryrun=true', { all_agents: true }, /unknown parameter "dryrun" \(did you mean "dry_run"\?\)/],
        ['GET', '/rollouts?stat=running', undefined, /unknown parameter "stat" \(did you mean "state"\?\)/],
        ['GET', `/rollouts/${rollout}?verbose=1`, undefined, /unknown parameter "verbose"; GetRollout takes servers_limit, servers_marker/],
        ['DELETE', `/rollouts/${rollout}?force=true`, undefined, /unknown parameter "force"/],
        ['POST', `/rollouts/${rollout}/promote`, { now: true }, /unknown parameter "now"/],
        ['POST', `/rollouts/${rollout}/resume`, { x: 1 }, /unknown parameter "x"/],
        ['POST', `/rollouts/${rollout}/revert`, { why: 'bad' }, /unknown parameter "why"/],
        ['DELETE', `/servers/${randomUUID()}/instances?dryrun=true`, undefined, /unknown parameter "dryrun" \(did you mean "dry_run"\?\)/],
    ];
    for (const [method, path, body, message] of cases) {
        const r = await w.h.call(method, path, { ...(body ? { body } : {}), version: '~2' });
        t.equal(r.status, 409, `${method} ${path}`);
        t.equal(r.body.code, 'InvalidArgument', `${method} ${path}`);
        t.match(r.body.message, message, `${method} ${path}`);
    }
    // The routes SAPI 2.1.2 had keep its tolerance.
    const old = await w.h.call('GET', `/services/${svc}?whatever=1`);
    t.equal(old.status, 200, '2.1.2 routes ignore unknown keys');
});

t.test('a dry run answers the plan, starts nothing, and the run does what it said', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 20 });
    t.teardown(w.close);
    const servers = await vmAgents(w, 3);
    const target = w.newImage('vm-agent', '1.1.0');
    // One server is down, one already runs the target.
    const down = w.cnapi.state.servers.get(servers[1] as string);
    if (down) down.status = 'unknown';
    const current = w.cnapi.state.servers.get(servers[2] as string);
    if (current?.agents) current.agents = current.agents.map((a) => (a.name === 'vm-agent' ? { ...a, image_uuid: target, version: '1.1.0' } : a));
    const body = { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: target, concurrency: 2 };
    const before = installs(w);
    const rolloutsBefore = (await w.h.call('GET', '/rollouts')).body.length;

    const plan = await post(w.h, '/rollouts', { ...body, dry_run: true });
    t.equal(plan.status, 200, plan.text);
    t.equal(plan.body.dry_run, true);
    t.equal(plan.body.state, 'planned');
    t.equal(plan.body.uuid, undefined, 'a plan has no uuid: it is not stored');
    t.equal(plan.body.summary, '1 of 3 item(s) on 3 server(s) would run: 1 upgrade');
    const byServer = new Map<string, Body>(plan.body.servers.map((s: Body) => [s.server_uuid, s.items[0]]));
    t.match(byServer.get(servers[0] as string), { state: 'pending', from_version: '1.0.0', to_version: '1.1.0', to_image: target });
    t.match(byServer.get(servers[1] as string), { state: 'failed', reason: 'server not ready', error: /is not running/ });
    t.match(byServer.get(servers[2] as string), { state: 'skipped', reason: 'already at the target image' });
    t.equal(installs(w), before, 'no CNAPI task, no install');
    t.equal((await w.h.call('GET', '/rollouts')).body.length, rolloutsBefore, 'nothing stored');
    const inst = await w.h.call('GET', `/instances?server_uuid=${servers[2]}`, { version: '~2' });
    t.equal(inst.body[0].params.image_uuid, w.svc['vm-agent']?.image, 'nothing recorded either');

    const run = await post(w.h, '/rollouts', body);
    t.equal(run.status, 200, run.text);
    const strip = (items: Body[]): Body[] =>
        items.map((i: Body) => ({
            instance: i.instance_uuid,
            server: i.server_uuid,
            from: i.from_image,
            to: i.to_image,
            // The answer comes as the run begins: an item may be running already.
            state: i.state === 'running' ? 'pending' : i.state,
            reason: i.reason,
        }));
    t.same(strip(run.body.items), strip(plan.body.items), 'the run starts from the plan the preview showed');
    const done = await waitDone(w.h, run.body.uuid);
    t.same([done.counts.succeeded, done.counts.failed, done.counts.skipped], [1, 1, 1]);
});

t.test('a plan that matches no instance is refused; one with nothing to upgrade ends at once, saying so', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'] });
    t.teardown(w.close);
    const servers = await vmAgents(w, 2);
    const svc = w.svc['vm-agent']?.uuid as string;
    const typo = randomUUID();
    const none = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: w.newImage('vm-agent'), servers: [typo] });
    t.equal(none.status, 409);
    t.equal(none.body.code, 'InvalidArgument');
    t.match(none.body.message, new RegExp(`nothing to roll out: no instance of vm-agent on server\\(s\\) ${typo}`));
    const partly = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: w.newImage('vm-agent'), servers: [servers[0], typo] });
    t.equal(partly.status, 200);
    t.ok(
        partly.body.warnings.some((m: string) => m.includes(`no instance of vm-agent on server(s) ${typo}`)),
        'a server with nothing planned is named',
    );
    await waitDone(w.h, partly.body.uuid);

    // Everything already at the target: 200, succeeded, every item skipped, and said so.
    const image = w.svc['vm-agent']?.image as string;
    const same = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: image, servers: [servers[1]] });
    t.equal(same.status, 200, same.text);
    t.equal(same.body.state, 'succeeded');
    t.ok(
        same.body.items.every((i: Body) => i.state === 'skipped' && i.reason === 'already at the target image'),
        'every item skipped',
    );
    t.ok(
        same.body.warnings.some((m: string) => /nothing to upgrade: every item is skipped or failed before running \(1 already at the target image\)/.test(m)),
        'stated as such',
    );
});

t.test('an agent newer than the target is skipped, and run only with allow_downgrade; a revert goes back', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 10 });
    t.teardown(w.close);
    const [server] = await vmAgents(w, 1, '1.1.0');
    const older = w.newImage('vm-agent', '1.0.0');
    const svc = w.svc['vm-agent']?.uuid as string;
    const plan = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: older, dry_run: true });
    t.match(plan.body.items[0], { state: 'skipped', from_version: '1.1.0', to_version: '1.0.0', reason: /newer than the target \(1\.1\.0 > 1\.0\.0\)/ });
    const run = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: older });
    t.equal(run.body.state, 'succeeded', 'nothing to do');
    t.equal(run.body.counts.skipped, 1);
    t.equal(w.cnapi.agentsOf(server as string).find((a) => a.name === 'vm-agent')?.version, '1.1.0', 'not downgraded');

    const down = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: older, allow_downgrade: true });
    t.equal(down.status, 200, down.text);
    t.equal(down.body.allow_downgrade, true);
    const done = await waitDone(w.h, down.body.uuid);
    t.equal(done.state, 'succeeded');
    t.equal(done.counts.succeeded, 1, 'downgraded when asked');
    t.equal(w.cnapi.agentsOf(server as string).find((a) => a.name === 'vm-agent')?.version, '1.0.0');

    // A revert puts the newer one back: the one flow that goes backwards by design.
    const newer = w.newImage('vm-agent', '2.0.0');
    const up = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: newer });
    await waitDone(w.h, up.body.uuid);
    const rev = await post(w.h, `/rollouts/${up.body.uuid}/revert`);
    t.equal(rev.status, 200, rev.text);
    const reverted = await waitDone(w.h, up.body.uuid);
    t.equal(reverted.state, 'reverted');
    t.equal(w.cnapi.agentsOf(server as string).find((a) => a.name === 'vm-agent')?.version, '1.0.0', 'back to the previous version');
});

t.test('the rollout list: summaries, newest first, paged with limit and marker, filtered by state', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 5 });
    t.teardown(w.close);
    await vmAgents(w, 2);
    const svc = w.svc['vm-agent']?.uuid as string;
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
        const r = await post(w.h, '/rollouts', { service_uuid: svc, image_uuid: w.newImage('vm-agent'), concurrency: 2 });
        await waitDone(w.h, r.body.uuid);
        made.unshift(r.body.uuid);
    }
    const all = await w.h.call('GET', '/rollouts');
    t.same(
        all.body.map((r: Body) => r.uuid),
        made,
        'newest first',
    );
    t.ok(
        all.body.every((r: Body) => r.items === undefined && r.servers === undefined && r.totals.items === 2),
        'summaries: totals, no items',
    );
    const first = await w.h.call('GET', '/rollouts?limit=2');
    t.same(
        first.body.map((r: Body) => r.uuid),
        made.slice(0, 2),
    );
    const next = await w.h.call('GET', `/rollouts?limit=2&marker=${made[1]}`);
    t.same(
        next.body.map((r: Body) => r.uuid),
        made.slice(2),
    );
    t.equal((await w.h.call('GET', '/rollouts?state=succeeded')).body.length, 3);
    t.equal((await w.h.call('GET', '/rollouts?state=paused')).body.length, 0);
    const bad = await w.h.call('GET', '/rollouts?state=done');
    t.equal(bad.status, 409);
    t.match(bad.body.message, /state must be one of running, paused/);
    const detail = await w.h.call('GET', `/rollouts/${made[0]}`);
    t.equal(detail.body.items.length, 2, 'the detail has the items');
    // A large rollout's detail, a page of servers at a time.
    const page1 = await w.h.call('GET', `/rollouts/${made[0]}?servers_limit=1`);
    t.equal(page1.body.servers_total, 2);
    t.equal(page1.body.servers.length, 1);
    t.ok(
        page1.body.items.every((i: Body) => i.server_uuid === page1.body.servers[0].server_uuid),
        'only the items of the servers shown',
    );
    const page2 = await w.h.call('GET', `/rollouts/${made[0]}?servers_limit=1&servers_marker=${page1.body.servers[0].server_uuid as string}`);
    t.equal(page2.body.servers.length, 1);
    t.not(page2.body.servers[0].server_uuid, page1.body.servers[0].server_uuid, 'the next server');
    const badPage = await w.h.call('GET', `/rollouts/${made[0]}?servers_limit=0`);
    t.equal(badPage.status, 409);
    t.match(badPage.body.message, /servers_limit must be an integer between 1 and 1000/);
});

t.test('outcome counters keep a rollout that failed between two scrapes', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 5 });
    t.teardown(w.close);
    const port = await w.h.app.listenMetrics(0, '127.0.0.1');
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const count = (text: string, name: string, label: string): number => Number(new RegExp(`^${name}\\{${label}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    const servers = await vmAgents(w, 2);
    const before = await scrape();
    t.equal(count(before, 'sapi_rollouts_finished_total', 'state="failed"'), 0, 'a series from the start');
    t.equal(count(before, 'sapi_rollout_items_finished_total', 'outcome="skipped"'), 0);
    w.cnapi.planTaskOn(servers[0] as string, { fail: 'AgentInstall error: no space left on device' });
    const r = await post(w.h, '/rollouts', { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.newImage('vm-agent'), concurrency: 2 });
    t.equal((await waitDone(w.h, r.body.uuid)).state, 'failed');
    const same = await post(w.h, '/rollouts', { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.svc['vm-agent']?.image, servers: [servers[0]] });
    t.equal(same.body.state, 'succeeded');
    const after = await scrape();
    t.equal(count(after, 'sapi_rollouts_finished_total', 'state="failed"'), 1);
    t.equal(count(after, 'sapi_rollouts_finished_total', 'state="succeeded"'), 1);
    t.equal(count(after, 'sapi_rollout_items_finished_total', 'outcome="failed"'), 1);
    t.equal(count(after, 'sapi_rollout_items_finished_total', 'outcome="succeeded"'), 1);
    t.equal(count(after, 'sapi_rollout_items_finished_total', 'outcome="skipped"'), 1);
    t.notMatch(after, new RegExp(`rollout="${r.body.uuid as string}"`), "the ended rollout's gauges are gone");
});

t.test('smaller answers: limits, offset, HEAD /ping, the one-way mode switch', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'] });
    t.teardown(w.close);
    const zero = await w.h.call('GET', '/instances?limit=0');
    const negative = await w.h.call('GET', '/instances?limit=-1');
    const word = await w.h.call('GET', '/services?limit=abc');
    for (const r of [zero, negative, word]) {
        t.equal(r.status, 409);
        t.equal(r.body.message, 'limit must be an integer between 1 and 1000', 'one message for every bad limit');
    }
    const offset = await w.h.call('GET', '/instances?offset=abc');
    t.equal(offset.status, 409);
    t.match(offset.body.message, /offset is not supported: page with limit and marker/);
    const head = await fetch(`${w.h.url}/ping`, { method: 'HEAD' });
    t.equal(head.status, 200, 'HEAD /ping');
    t.equal(await head.text(), '', 'no body');
    const proto = await w.h.call('POST', '/mode?mode=proto');
    t.equal(proto.status, 409);
    t.equal(proto.body.message, 'the switch to full mode is one-way: a SAPI in full mode cannot go back to proto');
    const nonsense = await w.h.call('POST', '/mode?mode=banana');
    t.equal(nonsense.body.message, 'invalid mode: banana');
});
