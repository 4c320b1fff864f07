// Rollout wall time: 1,000 servers, a 100 ms fake cn-agent task,
// concurrency 20, against the ideal 1000 / 20 × 0.1 s = 5 s.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { withIndexes } from '../lib/model/instance-records.js';
import { SqliteStore } from '../lib/stor/sqlite/index.js';
import type { BatchOp } from '../lib/stor/store.js';
import { startFakeCnapi } from '../test/lib/fake-cnapi.js';
import { startFakeImgapi } from '../test/lib/fake-imgapi.js';
import { fmt, request, startServer, writeConfig } from './lib.js';

export async function benchRollout(servers = 1000, taskMs = 100, concurrency = 20, pollMs = 10): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-rollout-'));
    const imgapi = await startFakeImgapi();
    const cnapi = await startFakeCnapi({ taskDurationMs: taskMs, imgapi: { url: imgapi.url }, adoptDuringInstall: true });
    const img1 = imgapi.addImage({ name: 'vm-agent', version: '1.0.0' }).uuid;
    const img2 = imgapi.addImage({ name: 'vm-agent', version: '2.0.0' }).uuid;
    const store = new SqliteStore({ path: join(dir, 'sapi.sqlite') });
    await store.init();
    const appUuid = randomUUID();
    const svcUuid = randomUUID();
    await store.put('sapi_applications', { uuid: appUuid, name: 'sdc', owner_uuid: randomUUID() });
    await store.put('sapi_services', { uuid: svcUuid, name: 'vm-agent', application_uuid: appUuid, type: 'agent', params: { image_uuid: img1 } });
    const ops: BatchOp[] = [];
    for (let i = 0; i < servers; i++) {
        const uuid = randomUUID();
        const server = cnapi.addServer({
            agents: [
                { name: 'cn-agent', version: '2.13.0', image_uuid: randomUUID(), uuid: randomUUID() },
                { name: 'vm-agent', version: '1.0.0', image_uuid: img1, uuid },
            ],
        }).uuid;
        ops.push({
            op: 'put',
            bucket: 'sapi_instances',
            value: withIndexes({ uuid, service_uuid: svcUuid, type: 'agent', params: { server_uuid: server, image_uuid: img1 } }),
        });
    }
    await store.batch(ops);
    await store.close();
    // SAPI in its own process (its own core), the fake CNAPI/IMGAPI here.
    const port = 21000 + Math.floor(Math.random() * 1000);
    writeConfig(join(dir, 'config.json'), port, join(dir, 'sapi.sqlite'), {
        mode: 'full',
        log_level: 'warn',
        cnapi: { url: cnapi.url },
        imgapi: { url: imgapi.url },
        deploy: { taskPollIntervalMs: pollMs },
    });
    const srv = await startServer(join(dir, 'config.json'), port);
    const url = srv.url;
    cnapi.sapiUrl = url;
    try {
        const t0 = performance.now();
        const started = await request(url, 'POST', '/rollouts', { service_uuid: svcUuid, image_uuid: img2, concurrency }, { 'accept-version': '~2' });
        const { uuid } = JSON.parse(started.body) as { uuid: string };
        let state = 'running';
        let body: { state: string; counts: Record<string, number>; average_ms?: number } = { state, counts: {} };
        while (state === 'running') {
            await new Promise((r) => setTimeout(r, 100));
            body = JSON.parse((await request(url, 'GET', `/rollouts/${uuid}`)).body) as typeof body;
            state = body.state;
        }
        const wall = (performance.now() - t0) / 1000;
        const ideal = (servers / concurrency) * (taskMs / 1000);
        // What the fake cn-agent tasks really took (the nominal 100 ms plus
        // the fake's image fetch and the agent's self-adoption into SAPI).
        const durations = [...cnapi.state.tasks.values()]
            .filter((task) => task.status === 'complete' && task.history?.[0])
            .map((task) => Date.parse(String(task.history?.[0]?.timestamp)) - Date.parse(task.timestamp));
        const taskAvg = durations.reduce((a, b) => a + b, 0) / Math.max(durations.length, 1);
        console.log(
            `rollout ${servers} servers, task ${taskMs} ms, concurrency ${concurrency} (poll ${pollMs} ms): wall ${fmt(wall, 2)} s, ideal ${fmt(ideal, 2)} s, ratio ${fmt(wall / ideal, 2)}x (target ≤ 1.2x)` +
                `; ${body.counts.succeeded ?? 0} succeeded, ${body.counts.failed ?? 0} failed, average item ${body.average_ms ?? 0} ms`,
        );
        console.log(
            `  fake tasks really took ${fmt(taskAvg, 1)} ms on average (adoption included): ideal at that duration ${fmt((servers / concurrency) * (taskAvg / 1000), 2)} s, ratio ${fmt(wall / ((servers / concurrency) * (taskAvg / 1000)), 2)}x`,
        );
    } finally {
        await srv.stop();
        await cnapi.close();
        await imgapi.close();
        rmSync(dir, { recursive: true, force: true });
    }
}
