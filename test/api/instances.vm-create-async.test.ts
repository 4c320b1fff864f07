// Full mode, vm instances: `async` CreateInstance returns as soon as VMAPI
// accepted the provision, with the `job_uuid`.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv } from '../lib/vm-env.js';

void t.test('?async=true: 200 before the job ends, with job_uuid; the record is written, job_uuid not stored', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    // The job cannot end before release(): the answer comes while it runs.
    const release = env.vmapi.holdJobs();
    const r = await env.create({ uuid, metadata: { SAPI_URL: 'http://sapi' } }, '?async=true');
    t.equal(r.status, 200);
    const jobs = [...env.vmapi.state.jobs.values()];
    t.equal(jobs.length, 1);
    t.strictSame(r.body, {
        uuid,
        service_uuid: env.svc.uuid,
        params: { image_uuid: env.image },
        metadata: { SAPI_URL: 'http://sapi' },
        job_uuid: jobs[0]?.uuid,
        type: 'vm',
    });
    t.not(jobs[0]?.execution, 'succeeded', 'the job is still running when SAPI answers');
    t.equal(env.vmapi.requestsTo('GET /jobs/:uuid').length, 0, 'the job is not polled');
    t.same(env.vmapi.requestsTo('POST /vms')[0]?.body, (await env.h.call('GET', `/instances/${uuid}/payload`)).body);

    const rec = await env.record(uuid);
    t.strictSame(rec, { uuid, service_uuid: env.svc.uuid, params: { image_uuid: env.image }, metadata: { SAPI_URL: 'http://sapi' }, type: 'vm' });

    // The caller follows the job itself (until it ends; tap's timeout bounds the wait).
    release();
    while (env.vmapi.state.jobs.get(r.body.job_uuid)?.execution !== 'succeeded') {
        await new Promise((res) => setTimeout(res, 20));
    }
    t.equal(env.vmapi.state.jobs.get(r.body.job_uuid)?.execution, 'succeeded');
    t.equal(env.vmapi.state.vms.get(uuid)?.state, 'running');
});

void t.test('async in the body (v1 view): job_uuid, no type', async (t) => {
    const env = await startVmEnv(t);
    const r = await env.h.call('POST', '/instances', { body: { service_uuid: env.svc.uuid, async: true } });
    t.equal(r.status, 200);
    t.match(r.body, { service_uuid: env.svc.uuid, job_uuid: /^[0-9a-f-]{36}$/ });
    t.notOk('type' in r.body);
    t.ok(env.vmapi.state.jobs.has(r.body.job_uuid), "the job_uuid is VMAPI's");
});

void t.test('async=false is a sync create (no job_uuid; the job was awaited)', async (t) => {
    const env = await startVmEnv(t);
    const r = await env.create({}, '?async=false');
    t.equal(r.status, 200);
    t.notOk('job_uuid' in r.body);
    t.equal(r.body.params.server_uuid, env.server);
    t.equal(env.vmapi.state.vms.get(r.body.uuid)?.state, 'running');
});

void t.test('async, VMAPI refuses the provision: the error, no record', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    env.vmapi.failNext('POST /vms', 500, { code: 'InternalError', message: 'moray is down' });
    const r = await env.create({ uuid }, '?async=true');
    isError(t, r, 502, 'DownstreamError', `provisioning VM ${uuid}: VMAPI error 500: moray is down`);
    t.equal(await env.record(uuid), null, 'no record');

    env.vmapi.failNext('POST /vms', 409, { code: 'ValidationFailed', message: 'Invalid VM parameters' });
    const r2 = await env.create({ uuid }, '?async=true');
    isError(t, r2, 409, 'ValidationFailed', `provisioning VM ${uuid}: Invalid VM parameters`);
    t.equal(await env.record(uuid), null, 'no record');
});

void t.test('async, VMAPI already has the VM: recorded, no job_uuid', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ image_uuid: env.image });
    const r = await env.create({ uuid: vm.uuid }, '?async=true');
    t.equal(r.status, 200);
    t.notOk('job_uuid' in r.body);
    t.equal(r.body.params.server_uuid, vm.server_uuid);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 0);
});
