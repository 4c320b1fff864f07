// Prometheus metrics on their own port: request counts and latency by
// route and status, store latency, downstream calls, deploys, rollouts.

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';

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
    t.match(text, /sapi_process_resident_memory_bytes/);
    const notFound = await fetch(`http://127.0.0.1:${port}/other`);
    t.equal(notFound.status, 404);
});
