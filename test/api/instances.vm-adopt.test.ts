// Full mode, vm instances: adoption (`exists: true`) records a VM VMAPI
// already has and provisions nothing (2.1.2 lost the flag and provisioned an
// unknown uuid).

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv } from '../lib/vm-env.js';

void t.test('exists: true with the VM in VMAPI: recorded with its image and server, nothing provisioned', async (t) => {
    const env = await startVmEnv(t);
    const vmImage = randomUUID(); // need not be in IMGAPI: nothing is provisioned
    const vmServer = randomUUID();
    const vm = env.vmapi.addVm({ image_uuid: vmImage, server_uuid: vmServer, alias: 'sapi0' });
    const r = await env.create({ uuid: vm.uuid, exists: true, metadata: { A: 1 } }, '', { 'x-request-id': 'adopt-1' });
    t.equal(r.status, 200);
    t.strictSame(r.body, {
        uuid: vm.uuid,
        service_uuid: env.svc.uuid,
        params: { image_uuid: vmImage, server_uuid: vmServer },
        metadata: { A: 1 },
        type: 'vm',
    });
    t.same(
        env.vmapi.requests.map((q) => `${q.method} ${q.path}`),
        [`GET /vms/${vm.uuid}`],
        'only the VM lookup',
    );
    t.equal(env.vmapi.requests[0]?.headers['x-request-id'], 'adopt-1');
    t.equal(env.imgapi.requests.length, 0, 'IMGAPI not asked');
    t.same(await env.record(vm.uuid), r.body);
    const byImage = await env.h.call('GET', `/instances?image_uuid=${vmImage}`, { version: '~2' });
    t.same(
        byImage.body.map((i: { uuid: string }) => i.uuid),
        [vm.uuid],
        "indexed by the VM's image",
    );
});

void t.test('exists as a string "true" (query) works; "false" provisions', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ image_uuid: env.image });
    const r = await env.create({ uuid: vm.uuid }, '?exists=true');
    t.equal(r.status, 200);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 0);

    const uuid = randomUUID();
    const p = await env.create({ uuid, exists: 'false' });
    t.equal(p.status, 200);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 1, 'exists=false is an ordinary create');
});

void t.test('exists: true with no such VM: 409 no such zone, nothing written, nothing provisioned', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    const r = await env.create({ uuid, exists: true });
    isError(t, r, 409, 'InvalidArgument', `no such zone: ${uuid}`);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 0);
    t.equal(await env.record(uuid), null);

    const gone = env.vmapi.addVm({ state: 'destroyed' });
    const r2 = await env.create({ uuid: gone.uuid, exists: true });
    isError(t, r2, 409, 'InvalidArgument', `no such zone: ${gone.uuid}`);
    t.equal(await env.record(gone.uuid), null, 'a destroyed VM cannot be adopted');
});

void t.test('exists: true without uuid: 409 MissingParameter, VMAPI not called', async (t) => {
    const env = await startVmEnv(t);
    const r = await env.create({ exists: true });
    isError(t, r, 409, 'MissingParameter', 'missing required keys: uuid');
    t.equal(env.vmapi.requests.length, 0);
});

void t.test('adopting an instance uuid already recorded: 409, VMAPI not called', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ image_uuid: env.image });
    t.equal((await env.create({ uuid: vm.uuid, exists: true })).status, 200);
    env.vmapi.clearRequests();
    const again = await env.create({ uuid: vm.uuid, exists: true });
    isError(t, again, 409, 'InvalidArgument', `instance already exists: ${vm.uuid}`);
    t.equal(env.vmapi.requests.length, 0);
});

void t.test('adoption with VMAPI down or failing: the downstream error, no record', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ image_uuid: env.image });
    env.vmapi.failNext('GET /vms/:uuid', 500, { code: 'InternalError', message: 'boom' });
    const r = await env.create({ uuid: vm.uuid, exists: true });
    isError(t, r, 502, 'DownstreamError', `adopting VM ${vm.uuid}: VMAPI error 500: boom`);
    t.equal(await env.record(vm.uuid), null);

    await env.vmapi.down();
    const r2 = await env.create({ uuid: vm.uuid, exists: true });
    isError(t, r2, 503, 'DownstreamError', new RegExp(`^adopting VM ${vm.uuid}: VMAPI unavailable: .*ECONNREFUSED`));
    t.equal(await env.record(vm.uuid), null);
});

void t.test('an adopted VM is destroyed by DeleteInstance like any other', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ image_uuid: env.image });
    t.equal((await env.create({ uuid: vm.uuid, exists: true })).status, 200);
    const del = await env.h.call('DELETE', `/instances/${vm.uuid}`);
    t.equal(del.status, 204);
    t.equal(env.vmapi.state.vms.get(vm.uuid)?.state, 'destroyed');
    t.equal(await env.record(vm.uuid), null);
});
