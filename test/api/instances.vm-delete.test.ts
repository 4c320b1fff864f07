// Full mode, vm instances: DeleteInstance destroys the VM through VMAPI,
// then removes the record; a VM already gone is not an error; any failure
// keeps the record.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv, type VmEnv } from '../lib/vm-env.js';

async function anInstance(env: VmEnv): Promise<{ uuid: string; before: unknown }> {
    const r = await env.create();
    if (r.status !== 200) {
        throw new Error(`create: ${r.status} ${r.text}`);
    }
    env.vmapi.clearRequests();
    return { uuid: r.body.uuid, before: r.body };
}

void t.test('delete: deleteVm, job awaited, then the record goes; 204', async (t) => {
    const env = await startVmEnv(t);
    const { uuid } = await anInstance(env);
    const r = await env.h.call('DELETE', `/instances/${uuid}`, { headers: { 'x-request-id': 'del-1' } });
    t.equal(r.status, 204);
    t.equal(r.text, '');
    const dels = env.vmapi.requestsTo('DELETE /vms/:uuid');
    t.equal(dels.length, 1);
    t.equal(dels[0]?.path, `/vms/${uuid}`);
    t.strictSame(dels[0]?.query, {}, 'no query');
    t.equal(dels[0]?.headers['x-request-id'], 'del-1');
    t.ok(env.vmapi.requestsTo('GET /jobs/:uuid').length >= 1, 'the job was polled');
    t.equal(env.vmapi.state.vms.get(uuid)?.state, 'destroyed');
    t.equal(await env.record(uuid), null, 'record removed');
    t.equal(env.cnapi.requests.length, 0, 'no teardown-hook, no CNAPI');
    t.equal(env.vmapi.requestsTo('GET /vms/:uuid').length, 0, 'no VM lookup without a teardown-hook');
});

void t.test('a VM already gone is not an error', async (t) => {
    const env = await startVmEnv(t);

    // 404 from VMAPI.
    const a = await anInstance(env);
    env.vmapi.state.vms.delete(a.uuid);
    t.equal((await env.h.call('DELETE', `/instances/${a.uuid}`)).status, 204, '404 from deleteVm');
    t.equal(await env.record(a.uuid), null);

    // A destroyed VM: 200 without job_uuid.
    const b = await anInstance(env);
    const vm = env.vmapi.state.vms.get(b.uuid);
    if (vm) vm.state = 'destroyed';
    t.equal((await env.h.call('DELETE', `/instances/${b.uuid}`)).status, 204, '200 without a job');
    t.equal(env.vmapi.requestsTo('GET /jobs/:uuid').length, 0, 'no job to wait for');
    t.equal(await env.record(b.uuid), null);

    // The destroy job fails with ResourceNotFoundError.
    const c = await anInstance(env);
    env.vmapi.failNextJob('VM not found', 'ResourceNotFoundError');
    t.equal((await env.h.call('DELETE', `/instances/${c.uuid}`)).status, 204, 'job error ResourceNotFoundError');
    t.equal(await env.record(c.uuid), null);
});

void t.test('the destroy job fails: 500 DestroyFailedError naming the job and why; record kept', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, before } = await anInstance(env);
    env.vmapi.failNextJob('zone halt timed out');
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    const job = [...env.vmapi.state.jobs.values()].find((j) => j.name.startsWith('destroy'));
    isError(
        t,
        r,
        500,
        'DestroyFailedError',
        `VMAPI destroy job destroy-7.3.0 (${job?.uuid}) for VM ${uuid} failed: zone halt timed out (at step cnapi.wait_task)`,
    );
    t.same(await env.record(uuid), before, 'record kept');

    // A bare-string chain error is reported as is.
    env.vmapi.failNextJobWith('cnapi task failed');
    const r2 = await env.h.call('DELETE', `/instances/${uuid}`);
    t.equal(r2.status, 500);
    t.match(r2.body.message, /failed: cnapi task failed \(at step cnapi\.wait_task\)$/);
    t.same(await env.record(uuid), before);

    // Retrying once VMAPI behaves works.
    t.equal((await env.h.call('DELETE', `/instances/${uuid}`)).status, 204);
    t.equal(await env.record(uuid), null);
});

void t.test('the destroy job hangs: 504 TaskTimeoutError naming the job; record kept', async (t) => {
    const env = await startVmEnv(t, { deploy: { jobDeadlineMs: 250 } });
    const { uuid, before } = await anInstance(env);
    env.vmapi.hangNextJob();
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    const job = [...env.vmapi.state.jobs.values()].find((j) => j.name.startsWith('destroy'));
    isError(
        t,
        r,
        504,
        'TaskTimeoutError',
        `waiting for the destroy of VM ${uuid}: VMAPI job destroy-7.3.0 (${job?.uuid}) timed out after 0.25s (execution: running)`,
    );
    t.same(await env.record(uuid), before);
});

void t.test('VMAPI 500 or down: DownstreamError; record kept', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, before } = await anInstance(env);
    env.vmapi.failNext('DELETE /vms/:uuid', 500, { code: 'InternalError', message: 'no moray' });
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 502, 'DownstreamError', `destroying VM ${uuid}: VMAPI error 500: no moray`);
    t.same(await env.record(uuid), before);

    // Accepted, then VMAPI errors on every poll: gives up naming the job.
    for (let i = 0; i < 5; i++) env.vmapi.failNext('GET /jobs/:uuid', 503, { code: 'ServiceUnavailable', message: 'busy' });
    const r2 = await env.h.call('DELETE', `/instances/${uuid}`);
    const job = [...env.vmapi.state.jobs.values()].find((j) => j.name.startsWith('destroy'));
    isError(t, r2, 502, 'DownstreamError', `waiting for the destroy of VM ${uuid}: VMAPI job ${job?.uuid}: giving up after 5 errors: VMAPI error 503: busy`);
    t.same(await env.record(uuid), before);

    await env.vmapi.down();
    const r3 = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r3, 503, 'DownstreamError', new RegExp(`^destroying VM ${uuid}: VMAPI unavailable: `));
    t.same(await env.record(uuid), before);
});

void t.test('VMAPI not answering: 504 DownstreamError after the request timeout; record kept', async (t) => {
    const env = await startVmEnv(t, { deploy: { downstreamTimeoutMs: 200 } });
    const { uuid, before } = await anInstance(env);
    env.vmapi.hang('DELETE /vms/:uuid');
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 504, 'DownstreamError', `destroying VM ${uuid}: VMAPI request timed out after 200ms: DELETE /vms/${uuid}`);
    t.same(await env.record(uuid), before);
    env.vmapi.unhang();
});

void t.test('missing instance: 404 ResourceNotFound, VMAPI not called', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 404, 'ResourceNotFound', `no such instance: ${uuid}`);
    t.equal(env.vmapi.requests.length, 0);
});
