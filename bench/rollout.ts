// Rollout wall time against the fake CNAPI, with SAPI in its own process:
// - one agent service on 1,000 servers, a 100 ms fake task, concurrency 20:
//   ideal 1000 / 20 × 0.1 s = 5 s;
// - a plan of 4 agent services on the same 1,000 servers (each server's
//   agents one after another), concurrency 20 servers: ideal
//   4 × 1000 × 0.1 s / 20 = 20 s;
// - setting up 100 new servers (cn-agent only) with a plan that installs
//   8 agent services (install_missing), concurrency 20 servers: ideal
//   8 × 100 × 0.1 s / 20 = 4 s.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { CnapiAgent } from '../lib/clients/cnapi.js';
import { withIndexes } from '../lib/model/instance-records.js';
import { SqliteStore } from '../lib/stor/sqlite/index.js';
import type { BatchOp } from '../lib/stor/store.js';
import { startFakeCnapi } from '../test/lib/fake-cnapi.js';
import { startFakeImgapi } from '../test/lib/fake-imgapi.js';
import { fmt, request, startServer, writeConfig } from './lib.js';

const PLAN_AGENTS = ['amon-agent', 'config-agent', 'net-agent', 'vm-agent'];

/** The agents a new server gets in the setup bench (besides cn-agent, which CN setup installs). */
const SETUP_AGENTS = ['config-agent', 'agents_core', 'amon-agent', 'amon-relay', 'cmon-agent', 'firewaller', 'net-agent', 'vm-agent'];

export async function benchRollout(servers = 1000, taskMs = 100, concurrency = 20, pollMs = 10): Promise<void> {
    await runOne(['vm-agent'], servers, taskMs, concurrency, pollMs);
    console.log(`== rollout plan: ${PLAN_AGENTS.length} agent services × ${servers} servers, fake task ${taskMs} ms, concurrency ${concurrency} servers`);
    await runOne(PLAN_AGENTS, servers, taskMs, concurrency, pollMs);
}

/**
 * Setting up new servers: a plan with install_missing installs 8 agents on
 * servers that have only cn-agent (each server's installs one after
 * another): ideal 8 × servers × task / concurrency.
 */
export async function benchSetupAgents(servers = 100, taskMs = 100, concurrency = 20, pollMs = 10): Promise<void> {
    await runOne(SETUP_AGENTS, servers, taskMs, concurrency, pollMs, true);
}

async function runOne(agents: string[], servers: number, taskMs: number, concurrency: number, pollMs: number, install = false): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-rollout-'));
    const imgapi = await startFakeImgapi();
    const cnapi = await startFakeCnapi({ taskDurationMs: taskMs, imgapi: { url: imgapi.url }, adoptDuringInstall: true });
    const store = new SqliteStore({ path: join(dir, 'sapi.sqlite') });
    await store.init();
    const appUuid = randomUUID();
    await store.put('sapi_applications', { uuid: appUuid, name: 'sdc', owner_uuid: randomUUID() });
    const svcs = agents.map((name) => ({
        name,
        uuid: randomUUID(),
        from: imgapi.addImage({ name, version: '1.0.0' }).uuid,
        to: imgapi.addImage({ name, version: '2.0.0' }).uuid,
    }));
    for (const s of svcs) {
        await store.put('sapi_services', { uuid: s.uuid, name: s.name, application_uuid: appUuid, type: 'agent', params: { image_uuid: s.from } });
    }
    const ops: BatchOp[] = [];
    for (let i = 0; i < servers; i++) {
        const list: CnapiAgent[] = [{ name: 'cn-agent', version: '2.13.0', image_uuid: randomUUID(), uuid: randomUUID() }];
        const server = randomUUID();
        for (const s of svcs) {
            if (install) {
                continue; // a new server: cn-agent only, nothing in SAPI
            }
            const uuid = randomUUID();
            list.push({ name: s.name, version: '1.0.0', image_uuid: s.from, uuid });
            ops.push({
                op: 'put',
                bucket: 'sapi_instances',
                value: withIndexes({ uuid, service_uuid: s.uuid, type: 'agent', params: { server_uuid: server, image_uuid: s.from } }),
            });
        }
        cnapi.addServer({ uuid: server, agents: list });
    }
    if (ops.length > 0) {
        await store.batch(ops);
    }
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
    const single = svcs.length === 1 ? svcs[0] : undefined;
    const body = install
        ? { services: svcs.map((s) => ({ service_uuid: s.uuid, image_uuid: s.to })), install_missing: true, concurrency }
        : single
          ? { service_uuid: single.uuid, image_uuid: single.to, concurrency }
          : { services: svcs.map((s) => ({ service_uuid: s.uuid, image_uuid: s.to })), concurrency };
    try {
        const t0 = Date.now();
        const started = await request(url, 'POST', '/rollouts', body, { 'accept-version': '~2' });
        const { uuid } = JSON.parse(started.body) as { uuid: string };
        let state = 'running';
        let got: { state: string; counts: Record<string, number>; average_ms?: number; finished_at?: string } = { state, counts: {} };
        // Polled as `sapiadm rollout` does (a 4,000-item rollout answer is a
        // few MB); the end is the rollout's own finished_at (same clock).
        while (state === 'running') {
            await new Promise((r) => setTimeout(r, 500));
            got = JSON.parse((await request(url, 'GET', `/rollouts/${uuid}`)).body) as typeof got;
            state = got.state;
        }
        const wall = ((got.finished_at ? Date.parse(got.finished_at) : Date.now()) - t0) / 1000;
        const items = servers * svcs.length;
        const ideal = (items / concurrency) * (taskMs / 1000);
        // What the fake tasks really took (the nominal 100 ms plus the
        // fake's image fetch and the agent's self-adoption into SAPI).
        const durations = [...cnapi.state.tasks.values()]
            .filter((task) => task.status === 'complete' && task.history?.[0])
            .map((task) => Date.parse(String(task.history?.[0]?.timestamp)) - Date.parse(task.timestamp));
        const taskAvg = durations.reduce((a, b) => a + b, 0) / Math.max(durations.length, 1);
        const what = install
            ? `setup plan installing ${svcs.length} agents × ${servers} servers`
            : single
              ? `rollout ${servers} servers`
              : `rollout plan ${svcs.length} agents × ${servers} servers`;
        console.log(
            `${what}, task ${taskMs} ms, concurrency ${concurrency} (poll ${pollMs} ms): elapsed ${fmt(wall, 2)} s, ideal ${fmt(ideal, 2)} s, ratio ${fmt(wall / ideal, 2)}x (target ≤ 1.2x)` +
                `; ${got.counts.succeeded ?? 0} succeeded, ${got.counts.failed ?? 0} failed, average item ${got.average_ms ?? 0} ms`,
        );
        console.log(
            `  fake tasks really took ${fmt(taskAvg, 1)} ms on average (adoption included): ideal at that duration ${fmt((items / concurrency) * (taskAvg / 1000), 2)} s, ratio ${fmt(wall / ((items / concurrency) * (taskAvg / 1000)), 2)}x`,
        );
    } finally {
        await srv.stop();
        await cnapi.close();
        await imgapi.close();
        rmSync(dir, { recursive: true, force: true });
    }
}
