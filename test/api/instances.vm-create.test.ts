// Full mode, vm instances: synchronous CreateInstance through VMAPI (with the
// IMGAPI image and NAPI network-name checks), and CreateService never asking
// IMGAPI (SAPI 2.1.2 dropped that image check long ago).

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv } from '../lib/vm-env.js';

void t.test('sync create: VMAPI gets exactly the payload, the job is awaited, the record gets server_uuid', async (t) => {
    const env = await startVmEnv(t);
    const { h, vmapi } = env;
    const uuid = randomUUID();
    const r = await env.create(
        {
            uuid,
            params: { alias: 'sapi0', networks: ['admin', env.adminNet, { name: 'external', primary: true }] },
            metadata: { SAPI_URL: 'http://sapi.coal', 'user-script': '#!/bin/bash', OTHER: 'x' },
        },
        '',
        { 'x-request-id': 'req-create-1' },
    );
    t.equal(r.status, 200);
    t.strictSame(r.body, {
        uuid,
        service_uuid: env.svc.uuid,
        params: {
            alias: 'sapi0',
            networks: ['admin', env.adminNet, { name: 'external', primary: true }],
            image_uuid: env.image,
            server_uuid: env.server,
        },
        metadata: { SAPI_URL: 'http://sapi.coal', 'user-script': '#!/bin/bash', OTHER: 'x' },
        type: 'vm',
    });
    t.notOk('job_uuid' in r.body, 'no job_uuid for a sync create');

    t.same(
        vmapi.requests.slice(0, 2).map((q) => q.routeKey),
        ['GET /vms/:uuid', 'POST /vms'],
        'looked the VM up, then created it',
    );
    const sent = vmapi.requestsTo('POST /vms')[0];
    t.strictSame(sent?.query, {}, 'no query on createVm');
    t.strictSame(sent?.body, {
        alias: 'sapi0',
        networks: [{ name: 'admin' }, { uuid: env.adminNet }, { name: 'external', primary: true }],
        image_uuid: env.image,
        owner_uuid: env.app.owner_uuid,
        uuid,
        brand: 'joyent-minimal',
        customer_metadata: { SAPI_URL: 'http://sapi.coal', 'user-script': '#!/bin/bash' },
    });
    t.ok(vmapi.requestsTo('GET /jobs/:uuid').length >= 1, 'the job was polled');
    t.equal(vmapi.state.vms.get(uuid)?.state, 'running', 'the VM is up when the create answers');
    for (const q of vmapi.requests) {
        t.equal(q.headers['x-request-id'], 'req-create-1', `${q.routeKey} carries the request id`);
    }
    t.same(
        env.imgapi.requests.map((q) => q.path),
        [`/images/${env.image}`],
        'the image was checked in IMGAPI',
    );
    t.same(
        env.napi.requests.map((q) => q.query),
        [{ name: 'admin' }, { name: 'external' }],
        'network names (not uuids) were checked in NAPI',
    );

    t.same(await env.record(uuid), r.body, 'the record is stored as answered');
    const byServer = await h.call('GET', `/instances?server_uuid=${env.server}`, { version: '~2' });
    t.same(
        byServer.body.map((i: { uuid: string }) => i.uuid),
        [uuid],
        'indexed by the server VMAPI chose',
    );
});

void t.test('what createVm receives equals GET /instances/:uuid/payload (server_uuid given)', async (t) => {
    const env = await startVmEnv(t, { svcParams: { tags: { smartdc_role: 'sapi' }, networks: ['admin'] } });
    const uuid = randomUUID();
    const r = await env.create({
        uuid,
        params: { server_uuid: env.server, max_physical_memory: 1024, brand: 'lx', customer_metadata: { no: 1 } },
        metadata: { 'assets-ip': '10.0.0.5', PASSED: 'yes', pass_vmapi_metadata_keys: ['PASSED', 'ABSENT'] },
    });
    t.equal(r.status, 200);
    const payload = await env.h.call('GET', `/instances/${uuid}/payload`);
    t.equal(payload.status, 200);
    t.strictSame(env.vmapi.requestsTo('POST /vms')[0]?.body, payload.body, 'byte-for-byte the same object');
    t.match(payload.body, {
        brand: 'joyent-minimal',
        networks: [{ name: 'admin' }],
        customer_metadata: { 'assets-ip': '10.0.0.5', PASSED: 'yes' },
    });
    t.equal(env.vmapi.state.vms.get(uuid)?.server_uuid, env.server);
});

void t.test('a VM VMAPI already has is recorded, not created (image and server from the VM)', async (t) => {
    const env = await startVmEnv(t);
    const vmImage = env.imgapi.addImage({ name: 'sapi', version: '2.0.0' }).uuid;
    const vmServer = randomUUID();
    const vm = env.vmapi.addVm({ image_uuid: vmImage, server_uuid: vmServer });
    const r = await env.create({ uuid: vm.uuid }, '?async=true');
    t.equal(r.status, 200);
    t.strictSame(r.body, {
        uuid: vm.uuid,
        service_uuid: env.svc.uuid,
        params: { image_uuid: vmImage, server_uuid: vmServer },
        type: 'vm',
    });
    t.equal(env.vmapi.requestsTo('POST /vms').length, 0, 'createVm never called');
    t.same(await env.record(vm.uuid), r.body);
});

void t.test('a destroyed VM with that uuid does not count: a new one is provisioned', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ state: 'destroyed' });
    const r = await env.create({ uuid: vm.uuid });
    t.equal(r.status, 200);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 1);
    t.equal(env.vmapi.state.vms.get(vm.uuid)?.state, 'running');
    t.equal(r.body.params.image_uuid, env.image);
});

void t.test('a VM left in state "failed" is not recorded: 409, nothing written', async (t) => {
    const env = await startVmEnv(t);
    const vm = env.vmapi.addVm({ state: 'failed' });
    const r = await env.create({ uuid: vm.uuid });
    isError(t, r, 409, 'InvalidArgument', `VM ${vm.uuid} exists in VMAPI in state "failed": destroy it before creating the instance again`);
    t.equal(env.vmapi.requestsTo('POST /vms').length, 0);
    t.equal(await env.record(vm.uuid), null);
});

void t.test('an image missing from the local IMGAPI: 409 naming it, nothing written, VMAPI never called', async (t) => {
    const env = await startVmEnv(t);
    const missing = randomUUID();
    const uuid = randomUUID();
    const r = await env.create({ uuid, params: { image_uuid: missing } });
    isError(t, r, 409, 'InvalidArgument', `image ${missing} not found in the local IMGAPI`);
    t.equal(env.vmapi.requests.length, 0, 'VMAPI never called');
    t.equal(await env.record(uuid), null, 'no record');

    // The service's own image gone from IMGAPI: same answer.
    env.imgapi.state.images.delete(env.image);
    const r2 = await env.create({ uuid });
    isError(t, r2, 409, 'InvalidArgument', `image ${env.image} not found in the local IMGAPI`);
    t.equal(env.vmapi.requests.length, 0);
    const list = await env.h.call('GET', '/instances', { version: '~2' });
    t.same(list.body, []);
});

void t.test('an unknown network name: 409 naming it, nothing written, VMAPI never called', async (t) => {
    const env = await startVmEnv(t);
    const uuid = randomUUID();
    const r = await env.create({ uuid, params: { networks: ['admin', 'nosuchnet'] } });
    isError(t, r, 409, 'InvalidArgument', 'network "nosuchnet" not found in NAPI');
    t.equal(env.vmapi.requests.length, 0);
    t.equal(await env.record(uuid), null);

    const obj = await env.create({ uuid, params: { networks: [{ name: 'missing-too', primary: true }] } });
    isError(t, obj, 409, 'InvalidArgument', 'network "missing-too" not found in NAPI');

    // Uuids are not looked up (VMAPI validates them).
    const byUuid = await env.create({ uuid, params: { networks: [randomUUID()] } });
    t.equal(byUuid.status, 200);
    t.same(
        env.napi.requests.map((q) => q.query.name),
        ['admin', 'nosuchnet', 'missing-too'],
    );
});

void t.test('without NAPI and IMGAPI configured, names and images are left to VMAPI', async (t) => {
    const env = await startVmEnv(t, { without: ['napi', 'imgapi'] });
    const missing = randomUUID();
    const r = await env.create({ params: { image_uuid: missing, networks: ['whatever'] } });
    t.equal(r.status, 200);
    t.same(env.vmapi.requestsTo('POST /vms')[0]?.body, {
        image_uuid: missing,
        networks: [{ name: 'whatever' }],
        owner_uuid: env.app.owner_uuid,
        uuid: r.body.uuid,
        brand: 'joyent-minimal',
        customer_metadata: {},
    });
    t.equal(env.imgapi.requests.length + env.napi.requests.length, 0);
});

void t.test('an existing instance uuid: 409, VMAPI not called', async (t) => {
    const env = await startVmEnv(t);
    const first = await env.create();
    t.equal(first.status, 200);
    env.vmapi.clearRequests();
    const again = await env.create({ uuid: first.body.uuid });
    isError(t, again, 409, 'InvalidArgument', `instance already exists: ${first.body.uuid}`);
    t.equal(env.vmapi.requests.length, 0);
});

void t.test('CreateService never asks IMGAPI, even for an unknown image (SAPI-285)', async (t) => {
    const env = await startVmEnv(t);
    env.imgapi.clearRequests();
    const unknown = randomUUID();
    const r = await env.h.call('POST', '/services', {
        body: { name: 'later', application_uuid: env.app.uuid, params: { image_uuid: unknown } },
        version: '~2',
    });
    t.equal(r.status, 200);
    t.equal(r.body.params.image_uuid, unknown);
    const upd = await env.h.call('PUT', `/services/${r.body.uuid}`, { body: { params: { image_uuid: randomUUID() } } });
    t.equal(upd.status, 200);
    t.equal(env.imgapi.requests.length, 0, 'IMGAPI never called');
    t.equal(env.vmapi.requests.length, 0, 'VMAPI never called');
});
