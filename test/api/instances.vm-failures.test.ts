// Full mode, vm instances: every way a CreateInstance can fail leaves no
// instance record, and the error says what failed and why (issue 6 item 6).

import { randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv, type VmEnv } from '../lib/vm-env.js';

async function noInstances(t: Test, env: VmEnv, uuid: string): Promise<void> {
    t.equal(await env.record(uuid), null, 'no record for the failed create');
    const list = await env.h.call('GET', '/instances', { version: '~2' });
    t.same(list.body, [], 'no instance at all');
}

function provisionJob(env: VmEnv): { uuid: string; name: string } | undefined {
    return [...env.vmapi.state.jobs.values()].find((j) => j.name.startsWith('provision'));
}

void t.test('the provision job fails: 500 ProvisionFailedError naming the job and why; no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    env.vmapi.failNextJob('no compute resources available', 'NoAllocatableServersError');
    const r = await env.create({ uuid });
    const job = provisionJob(env);
    isError(
        t,
        r,
        500,
        'ProvisionFailedError',
        `VMAPI provision job provision-8.5.0 (${job?.uuid}) for VM ${uuid} failed: no compute resources available (at step cnapi.provision_vm)`,
    );
    await noInstances(t, env, uuid);

    // The VM is left in state "failed": a retry with the same uuid says so.
    t.equal(env.vmapi.state.vms.get(uuid)?.state, 'failed');
    const again = await env.create({ uuid });
    isError(t, again, 409, 'InvalidArgument', `VM ${uuid} exists in VMAPI in state "failed": destroy it before creating the instance again`);
    await noInstances(t, env, uuid);

    // A fresh uuid works.
    t.equal((await env.create()).status, 200);
});

void t.test('a job error without a message is reported as sent', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    env.vmapi.failNextJobWith({ code: 'EZONE' });
    const r = await env.create({ uuid });
    const job = provisionJob(env);
    isError(
        t,
        r,
        500,
        'ProvisionFailedError',
        `VMAPI provision job provision-8.5.0 (${job?.uuid}) for VM ${uuid} failed: {"code":"EZONE"} (at step cnapi.provision_vm)`,
    );
    await noInstances(t, env, uuid);
});

void t.test('the provision job hangs: 504 TaskTimeoutError naming the job; no record', async (t) => {
    const env = await startVmEnv(t, { deploy: { jobDeadlineMs: 300 } });
    const uuid = randomUUID();
    env.vmapi.hangNextJob();
    const r = await env.create({ uuid });
    const job = provisionJob(env);
    isError(
        t,
        r,
        504,
        'TaskTimeoutError',
        `waiting for the provision of VM ${uuid}: VMAPI job provision-8.5.0 (${job?.uuid}) timed out after 0.3s (execution: running)`,
    );
    // The job never ends: the 504 naming 0.3s is the configured deadline giving up.
    await noInstances(t, env, uuid);
});

void t.test('the record exists while the job runs (config-agent may ask for it), and goes when it fails', async (t) => {
    // SAPI's polls of the job go unanswered until unhang(): the create stays
    // in its wait for as long as the test needs (no deadline or request
    // timeout comes near), then the failed job ends it.
    const env = await startVmEnv(t, { deploy: { jobDeadlineMs: 600_000, downstreamTimeoutMs: 600_000 } });
    const uuid = randomUUID();
    env.vmapi.failNextJob('boom');
    env.vmapi.hang('GET /jobs/:uuid');
    const pending = env.create({ uuid });
    let seen = false;
    while (!seen) {
        await new Promise((res) => setTimeout(res, 10));
        seen = (await env.h.call('GET', `/configs/${uuid}`)).status === 200;
    }
    t.ok(seen, 'GET /configs/:uuid answered while provisioning');
    env.vmapi.unhang();
    t.equal((await pending).status, 500);
    await noInstances(t, env, uuid);
});

void t.test('VMAPI answers 500: 502 DownstreamError naming VMAPI; no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    env.vmapi.failNext('POST /vms', 500, { code: 'InternalError', message: 'moray unavailable' });
    const r = await env.create({ uuid });
    isError(t, r, 502, 'DownstreamError', `provisioning VM ${uuid}: VMAPI error 500: moray unavailable`);
    await noInstances(t, env, uuid);

    env.vmapi.failNext('GET /vms/:uuid', 500, { code: 'InternalError', message: 'lookup failed' });
    const r2 = await env.create({ uuid });
    isError(t, r2, 502, 'DownstreamError', `provisioning VM ${uuid}: VMAPI error 500: lookup failed`);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 1, 'no createVm after a failed lookup');
    await noInstances(t, env, uuid);
});

void t.test('VMAPI refuses the payload (4xx): its status, code and message pass through; no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    env.vmapi.failNext('POST /vms', 409, { code: 'ValidationFailed', message: 'Invalid VM parameters' });
    const r = await env.create({ uuid });
    isError(t, r, 409, 'ValidationFailed', `provisioning VM ${uuid}: Invalid VM parameters`);
    await noInstances(t, env, uuid);
});

void t.test('VMAPI down: 503 DownstreamError naming VMAPI; no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    await env.vmapi.down();
    const r = await env.create({ uuid });
    isError(t, r, 503, 'DownstreamError', new RegExp(`^provisioning VM ${uuid}: VMAPI unavailable: .*ECONNREFUSED`));
    await noInstances(t, env, uuid);
});

void t.test('VMAPI not answering: 504 DownstreamError after the request timeout; no record', async (t) => {
    const env = await startVmEnv(t, { deploy: { downstreamTimeoutMs: 200 } });
    const uuid = randomUUID();
    env.vmapi.hang('POST /vms');
    const r = await env.create({ uuid });
    isError(t, r, 504, 'DownstreamError', `provisioning VM ${uuid}: VMAPI request timed out after 200ms: POST /vms`);
    await noInstances(t, env, uuid);
    env.vmapi.unhang();
});

void t.test('VMAPI errors on every job poll after accepting: gives up naming the job; no record', async (t) => {
    const env = await startVmEnv(t, { jobDurationMs: 400 });
    const uuid = randomUUID();
    for (let i = 0; i < 5; i++) env.vmapi.failNext('GET /jobs/:uuid', 500, { code: 'InternalError', message: 'wf down' });
    const r = await env.create({ uuid });
    const job = provisionJob(env);
    isError(
        t,
        r,
        502,
        'DownstreamError',
        `waiting for the provision of VM ${uuid}: VMAPI job ${job?.uuid}: giving up after 5 errors: VMAPI error 500: wf down`,
    );
    await noInstances(t, env, uuid);
});

void t.test('IMGAPI down or failing: DownstreamError naming IMGAPI; VMAPI never called; no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    env.imgapi.failNext('GET /images/:uuid', 500, { code: 'InternalError', message: 'storage unavailable' });
    const r = await env.create({ uuid });
    isError(t, r, 502, 'DownstreamError', `checking image ${env.image} in the local IMGAPI: IMGAPI error 500: storage unavailable`);
    await noInstances(t, env, uuid);

    await env.imgapi.down();
    const r2 = await env.create({ uuid });
    isError(t, r2, 503, 'DownstreamError', new RegExp(`^checking image ${env.image} in the local IMGAPI: IMGAPI unavailable: `));
    await noInstances(t, env, uuid);
    t.equal(env.vmapi.requests.length, 0, 'VMAPI never called');
});

void t.test('NAPI down: DownstreamError naming NAPI; VMAPI never called; no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    await env.napi.down();
    const r = await env.create({ uuid, params: { networks: ['admin'] } });
    isError(t, r, 503, 'DownstreamError', new RegExp(`^looking up network "admin" in NAPI: NAPI unavailable: `));
    await noInstances(t, env, uuid);
    t.equal(env.vmapi.requests.length, 0);
});
