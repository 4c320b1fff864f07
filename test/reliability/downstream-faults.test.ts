// Downstream faults with the fake Triton services (down, slow, 500, task
// failure, task timeout): every answer is a clear error naming the
// service, and no half record is left behind.

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';
import { startVmEnv } from '../lib/vm-env.js';

interface Outcome {
    fault: string;
    status: number;
    code: string;
    message: string;
    halfRecords: number;
}

t.test('vm creates under every VMAPI fault', async (t) => {
    const outcomes: Outcome[] = [];
    const faults: [string, (env: Awaited<ReturnType<typeof startVmEnv>>) => Promise<void> | void, RegExp][] = [
        ['VMAPI down', async (e) => e.vmapi.down(), /VMAPI unavailable/],
        ['VMAPI 500 on create', (e) => e.vmapi.failNext('POST /vms', 500, { code: 'InternalError', message: 'boom' }), /VMAPI error 500: boom/],
        [
            'VMAPI slow (over the request timeout)',
            (e) => {
                e.vmapi.latencyMs = 1500;
            },
            /VMAPI request timed out/,
        ],
        ['provision job fails', (e) => e.vmapi.failNextJob('zone failed to boot'), /zone failed to boot/],
        ['provision job hangs (deadline)', (e) => e.vmapi.hangNextJob(), /timed out/],
        ['IMGAPI down', async (e) => e.imgapi.down(), /IMGAPI unavailable/],
    ];
    for (const [name, inject, expected] of faults) {
        const env = await startVmEnv(t, { deploy: { jobDeadlineMs: 600, downstreamTimeoutMs: 1000 } });
        await inject(env);
        const r = await env.create();
        const list = await env.h.call('GET', '/instances', { version: '~2' });
        outcomes.push({ fault: name, status: r.status, code: r.body?.code, message: r.body?.message, halfRecords: list.body.length });
        t.ok(r.status >= 500, `${name}: a 5xx (${r.status})`);
        t.type(r.body?.code, 'string', `${name}: a code`);
        t.match(r.body?.message, expected, `${name}: says what failed`);
        t.equal(list.body.length, 0, `${name}: no half record`);
    }
    for (const o of outcomes) {
        t.comment(`downstream-faults vm: ${o.fault}: ${o.status} ${o.code}, half records ${o.halfRecords}`);
    }
});

t.test('agent creates under every CNAPI fault', async (t) => {
    const w = await agentWorld({ deploy: { taskDeadlineMs: 400, downstreamTimeoutMs: 1000 } });
    t.teardown(w.close);
    const svc = w.svc['vm-agent']?.uuid;
    const faults: [string, () => Promise<void> | void, RegExp, () => Promise<void> | void][] = [
        ['CNAPI down', () => w.cnapi.down(), /CNAPI unavailable/, () => w.cnapi.up()],
        [
            'CNAPI 500 on install',
            () => w.cnapi.failNext('POST /servers/:uuid/install-agent', 500, { code: 'InternalError', message: 'Precondition failed: no connection moray' }),
            /CNAPI error 500/,
            () => undefined,
        ],
        [
            'CNAPI slow (over the request timeout)',
            () => {
                w.cnapi.latencyMs = 1500;
            },
            /CNAPI request timed out/,
            () => {
                w.cnapi.latencyMs = 0;
            },
        ],
        [
            'task fails',
            () => w.cnapi.failNextTask('AgentInstall error: Image not found'),
            /failed with error: AgentInstall error: Image not found/,
            () => undefined,
        ],
        ['task hangs (deadline)', () => w.cnapi.hangNextTask(), /timed out/, () => undefined],
        ['task never persisted', () => w.cnapi.dropNextTask(), /./, () => undefined],
    ];
    for (const [name, inject, expected, heal] of faults) {
        const server = w.cnapi.addServer().uuid;
        await inject();
        const r = await w.h.call('POST', '/instances', { body: { service_uuid: svc, params: { server_uuid: server } }, version: '~2' });
        await heal();
        const list = await w.h.call('GET', `/instances?server_uuid=${server}`, { version: '~2' });
        t.ok(r.status >= 500, `${name}: a 5xx (${r.status})`);
        t.type(r.body?.code, 'string', `${name}: a code`);
        t.match(r.body?.message, expected, `${name}: says what failed`);
        t.match(r.body?.message, server, `${name}: names the server`);
        t.equal(list.body.length, 0, `${name}: no half record`);
        t.comment(`downstream-faults agent: ${name}: ${r.status} ${r.body?.code}, half records ${list.body.length}`);
    }
});
