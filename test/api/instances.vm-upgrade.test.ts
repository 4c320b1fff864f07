// Full mode, vm instances: UpgradeInstance reprovisions through VMAPI;
// params.image_uuid changes only when the job succeeded.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv, type VmEnv } from '../lib/vm-env.js';

async function anInstanceWithNewImage(env: VmEnv): Promise<{ uuid: string; before: unknown; next: string }> {
    const r = await env.create();
    if (r.status !== 200) {
        throw new Error(`create: ${r.status} ${r.text}`);
    }
    const next = env.imgapi.addImage({ name: 'sapi', version: '2.0.0' }).uuid;
    env.vmapi.clearRequests();
    env.imgapi.clearRequests();
    return { uuid: r.body.uuid, before: r.body, next };
}

void t.test('upgrade: reprovisionVm with the new image, job awaited, params.image_uuid updated', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, next } = await anInstanceWithNewImage(env);
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, {
        body: { image_uuid: next },
        version: '~2',
        headers: { 'x-request-id': 'upg-1' },
    });
    t.equal(r.status, 200);
    t.strictSame(r.body, {
        uuid,
        service_uuid: env.svc.uuid,
        params: { image_uuid: next, server_uuid: env.server },
        type: 'vm',
    });
    const reprov = env.vmapi.requestsTo('POST /vms/:uuid');
    t.equal(reprov.length, 1);
    t.equal(reprov[0]?.path, `/vms/${uuid}`);
    t.strictSame(reprov[0]?.query, { action: 'reprovision' });
    t.strictSame(reprov[0]?.body, { image_uuid: next });
    t.equal(reprov[0]?.headers['x-request-id'], 'upg-1');
    t.ok(env.vmapi.requestsTo('GET /jobs/:uuid').length >= 1, 'the job was polled');
    t.equal(env.vmapi.state.vms.get(uuid)?.image_uuid, next, 'VMAPI reprovisioned the VM');
    t.same(
        env.imgapi.requests.map((q) => q.path),
        [`/images/${next}`],
        'the new image was checked',
    );
    t.equal(env.cnapi.state.executions.length, 0, 'no teardown-hook, no CNAPI call');

    t.same(await env.record(uuid), r.body);
    const byImage = await env.h.call('GET', `/instances?image_uuid=${next}`, { version: '~2' });
    t.same(
        byImage.body.map((i: { uuid: string }) => i.uuid),
        [uuid],
        'the image index follows',
    );
    const old = await env.h.call('GET', `/instances?image_uuid=${env.image}`, { version: '~2' });
    t.same(old.body, []);
});

void t.test('upgrade to an image missing from IMGAPI: 409 naming it, VMAPI not called, record unchanged', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, before } = await anInstanceWithNewImage(env);
    const missing = randomUUID();
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: missing } });
    isError(t, r, 409, 'InvalidArgument', `image ${missing} not found in the local IMGAPI`);
    t.equal(env.vmapi.requests.length, 0);
    t.same(await env.record(uuid), before);
});

void t.test('the reprovision job fails: 500 ReprovisionFailedError naming the job and why; record unchanged', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, before, next } = await anInstanceWithNewImage(env);
    env.vmapi.failNextJob('zfs receive failed: out of space');
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    const job = [...env.vmapi.state.jobs.values()].find((j) => j.name.startsWith('reprovision'));
    t.ok(job, 'a reprovision job ran');
    isError(
        t,
        r,
        500,
        'ReprovisionFailedError',
        `VMAPI reprovision job reprovision-7.0.0 (${job?.uuid}) for VM ${uuid} failed: zfs receive failed: out of space (at step cnapi.wait_task)`,
    );
    t.same(await env.record(uuid), before, 'params.image_uuid not changed');
});

void t.test('the reprovision job hangs: 504 TaskTimeoutError naming the job; record unchanged', async (t) => {
    const env = await startVmEnv(t, { deploy: { jobDeadlineMs: 300 } });
    const { uuid, before, next } = await anInstanceWithNewImage(env);
    env.vmapi.hangNextJob();
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    const job = [...env.vmapi.state.jobs.values()].find((j) => j.name.startsWith('reprovision'));
    isError(
        t,
        r,
        504,
        'TaskTimeoutError',
        `waiting for the reprovision of VM ${uuid}: VMAPI job reprovision-7.0.0 (${job?.uuid}) timed out after 0.3s (execution: running)`,
    );
    t.same(await env.record(uuid), before);
});

void t.test('VMAPI failing or down: DownstreamError, record unchanged', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, before, next } = await anInstanceWithNewImage(env);
    env.vmapi.failNext('POST /vms/:uuid', 500, { code: 'InternalError', message: 'workflow is down' });
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    isError(t, r, 502, 'DownstreamError', `reprovisioning VM ${uuid}: VMAPI error 500: workflow is down`);
    t.same(await env.record(uuid), before);

    await env.vmapi.down();
    const r2 = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    isError(t, r2, 503, 'DownstreamError', new RegExp(`^reprovisioning VM ${uuid}: VMAPI unavailable: `));
    t.same(await env.record(uuid), before);

    await env.imgapi.down();
    const r3 = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    isError(t, r3, 503, 'DownstreamError', new RegExp(`^checking image ${next} in the local IMGAPI: IMGAPI unavailable: `));
    t.same(await env.record(uuid), before);
});

void t.test('the VM is gone from VMAPI: 409 no such zone, record unchanged', async (t) => {
    const env = await startVmEnv(t);
    const { uuid, before, next } = await anInstanceWithNewImage(env);
    env.vmapi.state.vms.delete(uuid);
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    isError(t, r, 409, 'InvalidArgument', `no such zone: ${uuid}`);
    t.same(await env.record(uuid), before);
});

void t.test('teardown-hook runs before the reprovision', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': '/opt/smartdc/boot/teardown.sh' } });
    const { uuid, next } = await anInstanceWithNewImage(env);
    let reprovisionsWhenHookRan = -1;
    env.cnapi.executeHandler = () => {
        reprovisionsWhenHookRan = env.vmapi.requestsTo('POST /vms/:uuid').length;
        return 'ok';
    };
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    t.equal(r.status, 200);
    t.equal(r.body.params.image_uuid, next);
    const execs = env.cnapi.requestsTo('POST /servers/:uuid/execute');
    t.equal(execs.length, 1);
    t.equal(execs[0]?.path, `/servers/${env.server}/execute`);
    t.strictSame(execs[0]?.body, { script: `/usr/sbin/zlogin ${uuid} "/opt/smartdc/boot/teardown.sh"` });
    t.equal(reprovisionsWhenHookRan, 0, 'the hook ran before reprovisionVm');
});

void t.test('teardown-hook failing: 500 TeardownHookError, no reprovision, record unchanged', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': 'exit 1' } });
    const { uuid, before, next } = await anInstanceWithNewImage(env);
    env.cnapi.failNext('POST /servers/:uuid/execute', 500, { code: 'InternalError', message: 'script exited with 1' });
    const r = await env.h.call('PUT', `/instances/${uuid}/upgrade`, { body: { image_uuid: next } });
    isError(t, r, 500, 'TeardownHookError', `teardown-hook of instance ${uuid} failed on server ${env.server}: CNAPI error 500: script exited with 1`);
    t.equal(env.vmapi.requestsTo('POST /vms/:uuid').length, 0);
    t.same(await env.record(uuid), before);
});
