// Prometheus metrics on their own port: request counts and latency by
// route and status, store latency, downstream calls, deploys, rollouts;
// Node's default metrics under their standard names; a rollout's series
// only while it runs; a timed-out rollout item counted as a deploy.

import t from 'tap';

import { agentWorld, rolloutWhen, vmAgentServers } from '../lib/agent-world.js';

t.test('GET /metrics after traffic', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const port = await w.h.app.listenMetrics(0, '127.0.0.1');
    const server = w.cnapi.addServer().uuid;
    await w.h.call('GET', '/ping');
    await w.h.call('GET', '/applications/nope');
    const r = await w.h.call('POST', '/instances', { body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: server } }, version: '~2' });
    t.equal(r.status, 200);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    t.match(text, /sapi_http_requests_total\{route="Ping",method="GET",status="200"\} 1/);
    t.match(text, /sapi_http_requests_total\{route="GetApplication",method="GET",status="404"\} 1/);
    t.match(text, /sapi_http_request_duration_seconds_bucket\{le="[^"]+",route="CreateInstance",method="POST",status="200"\}/);
    t.match(text, /sapi_store_operation_duration_seconds_count\{backend="SqliteStorage",op="get",outcome="ok"\} \d+/);
    t.match(text, /sapi_downstream_request_duration_seconds_count\{service="CNAPI",method="POST",status="200"\} \d+/);
    t.match(text, /sapi_deploy_duration_seconds_count\{type="agent",op="create",outcome="ok"\} 1/);
    t.match(text, /^process_resident_memory_bytes /m, "Node's default metrics under their standard names");
    t.match(text, /^nodejs_eventloop_lag_seconds /m);
    t.notMatch(text, /^sapi_(process|nodejs)_/m, 'not under the sapi_ prefix');
    const notFound = await fetch(`http://127.0.0.1:${port}/other`);
    t.equal(notFound.status, 404);
});

t.test('rollout series while a rollout runs, removed once it ends', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const port = await w.h.app.listenMetrics(0, '127.0.0.1');
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    await vmAgentServers(w, 2);
    // Task polls go unanswered: both items stay running until unhang().
    w.cnapi.hang('GET /tasks/:id');
    const r = await w.h.call('POST', '/rollouts', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.newImage('vm-agent'), concurrency: 2 },
        version: '~2',
    });
    t.equal(r.status, 200, r.text);
    const uuid = r.body.uuid as string;
    await rolloutWhen(w.h, uuid, (b) => b.counts.running === 2);
    const during = await scrape();
    t.match(
        during,
        new RegExp(`^sapi_rollout_items\\{[^}]*rollout="${uuid}",service="vm-agent",state="running"[^}]*\\} 2$`, 'm'),
        'items by state while it runs',
    );
    t.match(during, new RegExp(`^sapi_rollout_items\\{[^}]*rollout="${uuid}",service="vm-agent",state="pending"[^}]*\\} 0$`, 'm'));

    w.cnapi.unhang();
    await w.h.app.rollouts.idle();
    const done = await rolloutWhen(w.h, uuid, (b) => b.state !== 'running');
    t.equal(done.state, 'succeeded', 'the polls recovered once answered');
    const after = await scrape();
    t.notMatch(after, `rollout="${uuid}"`, 'no series of the finished rollout');
    t.match(after, /# TYPE sapi_rollout_items gauge/, 'the metric itself stays');
});

t.test('a timed-out rollout item is counted in sapi_deploy_duration_seconds', async (t) => {
    const w = await agentWorld();
    t.teardown(w.close);
    const port = await w.h.app.listenMetrics(0, '127.0.0.1');
    const servers = await vmAgentServers(w, 3);
    // The last server's task never ends: only the rollout's per-item timeout ends its item.
    w.cnapi.planTaskOn(servers[2] as string, 'hang');
    const r = await w.h.call('POST', '/rollouts', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, image_uuid: w.newImage('vm-agent'), concurrency: 3, instance_timeout_ms: 1500 },
        version: '~2',
    });
    t.equal(r.status, 200, r.text);
    await w.h.app.rollouts.idle();
    const done = await rolloutWhen(w.h, r.body.uuid as string, (b) => b.state !== 'running');
    t.equal(done.state, 'failed');
    t.same(
        Object.fromEntries(
            done.items.map((i: { server_uuid: string; state: string; error?: string }) => [
                i.server_uuid,
                [i.state, /timed out after 1\.5s/.test(i.error ?? '')],
            ]),
        ),
        {
            [servers[0] as string]: ['succeeded', false],
            [servers[1] as string]: ['succeeded', false],
            [servers[2] as string]: ['failed', true],
        },
        'two upgraded, one timed out',
    );
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    t.match(text, /^sapi_deploy_duration_seconds_count\{type="agent",op="upgrade",outcome="ok"\} 2$/m, 'the upgraded items');
    t.match(text, /^sapi_deploy_duration_seconds_count\{type="agent",op="upgrade",outcome="timeout"\} 1$/m, 'the timed-out item, when its rollout item ended');
    t.notMatch(text, /outcome="error"/, 'counted once, as timed out');
});
