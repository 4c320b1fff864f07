// Two SAPI processes on one Moray and a rollout: the SAPI that started it
// drives it alone while it is alive (the other never takes it over, however
// long an item takes); once it is killed (kill -9, no goodbye) the other
// takes the rollout over after the lease expires and finishes it, without
// upgrading any server twice.

import t from 'tap';

import { eventually, sleep, twoAgentSapis } from './several-sapis.lib.js';

const TTL_MS = 1500;
const SERVERS = 5;

t.test('a rollout is driven by its live owner only, and taken over once the owner dies', async (t) => {
    const { imgapi, cnapi, a, b, agentService } = await twoAgentSapis(t, { taskDurationMs: 100, leaseTtlMs: TTL_MS, taskDeadlineMs: 20_000 });
    const img1 = imgapi.addImage({ name: 'vm-agent', version: '1.0.0' }).uuid;
    const svc = await agentService('vm-agent', img1);
    const servers: string[] = [];
    for (let i = 0; i < SERVERS; i++) {
        const s = cnapi.addServer().uuid;
        const r = await a.call('POST', '/instances', { body: { service_uuid: svc, params: { server_uuid: s } }, version: '~2' });
        t.equal(r.status, 200, r.text);
        servers.push(s);
    }
    const img2 = imgapi.addImage({ name: 'vm-agent', version: '2.0.0' }).uuid;
    const installsOf2 = (): { server_uuid: string }[] =>
        cnapi.state.taskLog.filter((x) => x.task === 'agent_install' && (x.params as { image_uuid?: string }).image_uuid === img2);

    // The first upgrade hangs until the test lets it go: A's rollout stays live and busy.
    cnapi.planTaskOn(servers[0] as string, 'hang');
    const started = await a.call('POST', '/rollouts', { body: { service_uuid: svc, image_uuid: img2, concurrency: 1 }, version: '~2' });
    t.equal(started.status, 200, started.text);
    const uuid = started.body.uuid as string;
    const owner = started.body.owner as string | undefined;
    t.ok(owner, 'the rollout names its owner');
    t.ok(await eventually(async () => installsOf2().length === 1), 'the first item runs');

    await t.test('a live owner is never taken over', async (t) => {
        // Two lease lifetimes, and more than two of B's looks for rollouts nobody holds.
        await sleep(2 * TTL_MS + 200);
        const seen = await b.call('GET', `/rollouts/${uuid}`, { version: '~2' });
        t.equal(seen.body.state, 'running');
        t.equal(seen.body.owner, owner, 'still driven by A');
        t.equal(installsOf2().length, 1, 'no other item started: B did not take over');
    });

    await t.test('killed mid-rollout, the owner is replaced once its lease expires', async (t) => {
        await a.kill();
        cnapi.sapiUrl = b.url;
        cnapi.releaseHungTasks(); // the task A started still completes on the node
        let body: { state: string; owner?: string; counts: { succeeded: number }; warnings?: string[] } | undefined;
        const done = await eventually(async () => {
            body = (await b.call('GET', `/rollouts/${uuid}`, { version: '~2' })).body;
            return body?.state !== 'running';
        }, 60_000);
        t.ok(done, 'the rollout ended');
        t.equal(body?.state, 'succeeded', JSON.stringify(body));
        t.equal(body?.counts.succeeded, SERVERS);
        t.not(body?.owner, owner, 'no longer A');
        t.ok(
            body?.warnings?.some((w) => /taken over/.test(w)),
            'marked as taken over',
        );
        const perServer = new Map<string, number>();
        for (const x of installsOf2()) {
            perServer.set(x.server_uuid, (perServer.get(x.server_uuid) ?? 0) + 1);
        }
        t.same(
            servers.map((s) => perServer.get(s) ?? 0),
            servers.map(() => 1),
            'every server upgraded exactly once',
        );
        const list = await b.call('GET', `/instances?service_uuid=${svc}`, { version: '~2' });
        t.same(
            list.body.map((i: { params: { image_uuid: string } }) => i.params.image_uuid),
            servers.map(() => img2),
            'every instance on the new image',
        );
    });
});
