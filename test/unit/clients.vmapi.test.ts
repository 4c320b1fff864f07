// VmapiClient (jobs, jobError), ImgapiClient and NapiClient against their fakes.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { ImgapiClient } from '../../lib/clients/imgapi.js';
import { NapiClient } from '../../lib/clients/napi.js';
import { VmapiClient, jobError, jobErrorName, type VmapiJob } from '../../lib/clients/vmapi.js';
import { startFakeImgapi } from '../lib/fake-imgapi.js';
import { startFakeNapi } from '../lib/fake-napi.js';
import { startFakeVmapi, type FakeVmapi, type FakeVmapiOptions } from '../lib/fake-vmapi.js';

const FAST = { intervalMs: 10, deadlineMs: 30_000 };

interface HasTeardown {
    teardown(fn: () => unknown): void;
}

async function setup(t: HasTeardown, opts: FakeVmapiOptions = {}): Promise<{ vmapi: FakeVmapi; client: VmapiClient }> {
    const vmapi = await startFakeVmapi(opts);
    const client = new VmapiClient({ url: vmapi.url, timeoutMs: 2000 });
    t.teardown(async () => {
        client.close();
        await vmapi.close();
    });
    return { vmapi, client };
}

function payload(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        uuid: randomUUID(),
        owner_uuid: '930896af-bf8c-48d4-885c-6573a94b1853',
        brand: 'joyent-minimal',
        image_uuid: randomUUID(),
        server_uuid: randomUUID(),
        alias: 'imgapi0',
        networks: [{ name: 'admin' }],
        ...extra,
    };
}

void t.test('getVm: the VM, or null on 404', async (t) => {
    const { vmapi, client } = await setup(t);
    const vm = vmapi.addVm({ alias: 'sapi0' });
    t.match(await client.getVm(vm.uuid, { reqId: 'r-9' }), { uuid: vm.uuid, alias: 'sapi0', state: 'running' });
    t.equal(vmapi.requests[0]?.headers['x-request-id'], 'r-9');
    t.equal(await client.getVm(randomUUID()), null);
    t.same(vmapi.requests[1]?.query, {}, 'no query');
});

void t.test('createVm + waitJob: succeeded, VM running with the payload fields', async (t) => {
    const { vmapi, client } = await setup(t);
    const p = payload();
    const ref = await client.createVm(p);
    t.equal(ref.vm_uuid, p['uuid']);
    t.ok(ref.job_uuid);
    t.same(vmapi.requests[0]?.body, p, 'payload sent as is');
    t.match(await client.getVm(ref.vm_uuid), { state: 'provisioning' });

    const job = await client.waitJob(ref.job_uuid, FAST);
    t.equal(job.execution, 'succeeded');
    t.equal(job.uuid, ref.job_uuid);
    t.match(job.name, /^provision-/);
    t.ok(job.chain_results.length > 0 && job.chain_results.every((r) => r.result === 'OK'));
    t.equal(jobError(job), null);
    t.match(await client.getVm(ref.vm_uuid), {
        state: 'running',
        server_uuid: p['server_uuid'],
        image_uuid: p['image_uuid'],
        alias: 'imgapi0',
    });

    // A second create with the same uuid is refused.
    await t.rejects(client.createVm(p), { statusCode: 409, restCode: 'ValidationFailed', message: 'Invalid VM parameters' });
});

void t.test('a failed job: jobError gives the last chain result error message', async (t) => {
    const { vmapi, client } = await setup(t);
    vmapi.failNextJob('No compute resources available', 'NoAllocatableServersError');
    const ref = await client.createVm(payload());
    const job = await client.waitJob(ref.job_uuid, FAST);
    t.equal(job.execution, 'failed');
    t.equal(jobError(job), 'No compute resources available');
    t.equal(jobErrorName(job), 'NoAllocatableServersError');
    t.match(job.chain_results.at(-1), { result: '', error: { name: 'NoAllocatableServersError' } });
    t.match(await client.getVm(ref.vm_uuid), { state: 'failed' });

    // A bare string error: the long form.
    vmapi.failNextJobWith('task timeout error');
    const ref2 = await client.createVm(payload());
    const job2 = await client.waitJob(ref2.job_uuid, FAST);
    const step = job2.chain_results.at(-1)?.name;
    t.equal(jobError(job2), `job ${job2.name} (${job2.uuid}) failed: ${step}: task timeout error`);
    t.equal(jobErrorName(job2), undefined);
});

void t.test('jobError table', (t) => {
    const base = (over: Partial<VmapiJob>): VmapiJob => ({
        uuid: 'j1',
        name: 'destroy-7.3.0',
        execution: 'failed',
        chain_results: [],
        ...over,
    });
    t.equal(jobError(base({ execution: 'succeeded', chain_results: [{ name: 'a', result: 'OK', error: '' }] })), null);
    t.equal(jobError(base({ chain_results: [{ name: 'a', error: { name: 'E', message: 'm' } }] })), 'm');
    t.equal(jobError(base({ chain_results: [{ name: 'a', error: { code: 'X' } }] })), 'job destroy-7.3.0 (j1) failed: a: {"code":"X"}');
    t.equal(jobError(base({ chain_results: [] })), 'job destroy-7.3.0 (j1) failed');
    t.equal(jobError(base({ execution: 'canceled', chain_results: [{ name: 'a', result: 'OK', error: '' }] })), 'job destroy-7.3.0 (j1) canceled');
    t.equal(
        jobError(
            base({
                chain_results: [
                    { name: 'a', error: { message: 'first' } },
                    { name: 'b', result: 'OK', error: '' },
                ],
            }),
        ),
        'job destroy-7.3.0 (j1) failed',
        'only the last chain result counts',
    );
    t.end();
});

void t.test('waitJob: a hung job times out; transient errors are tolerated up to maxErrors', async (t) => {
    const { vmapi, client } = await setup(t);
    vmapi.hangNextJob();
    const ref = await client.createVm(payload());
    // The job never ends: the 504 naming 0.25s is the deadline giving up.
    await t.rejects(client.waitJob(ref.job_uuid, { intervalMs: 20, deadlineMs: 250 }), {
        statusCode: 504,
        restCode: 'TaskTimeoutError',
        message: `VMAPI job provision-8.5.0 (${ref.job_uuid}) timed out after 0.25s (execution: running)`,
    });

    // Four errors in a row are fine (2.1.2 gives up at the 5th).
    const ok = await client.createVm(payload());
    for (let i = 0; i < 4; i++) vmapi.failNext('GET /jobs/:uuid', 503);
    t.equal((await client.waitJob(ok.job_uuid, { intervalMs: 5, deadlineMs: 30_000 })).execution, 'succeeded');

    const bad = await client.createVm(payload());
    for (let i = 0; i < 5; i++) vmapi.failNext('GET /jobs/:uuid', 500, { code: 'InternalError', message: 'wfapi down' });
    await t.rejects(client.waitJob(bad.job_uuid, { intervalMs: 5, deadlineMs: 30_000 }), {
        statusCode: 502,
        restCode: 'DownstreamError',
        message: `VMAPI job ${bad.job_uuid}: giving up after 5 errors: VMAPI error 500: wfapi down`,
    });

    // VMAPI down altogether.
    await vmapi.down();
    await t.rejects(client.waitJob(bad.job_uuid, { intervalMs: 5, deadlineMs: 30_000, maxErrors: 2 }), {
        statusCode: 503,
        message: /^VMAPI job .*: giving up after 2 errors: VMAPI unavailable: /,
    });
});

void t.test('reprovisionVm and deleteVm', async (t) => {
    const { vmapi, client } = await setup(t);
    const vm = vmapi.addVm();
    const image = randomUUID();
    const re = await client.reprovisionVm(vm.uuid, image);
    t.equal(re.vm_uuid, vm.uuid);
    const last = vmapi.requests.at(-1);
    t.equal(last?.url, `/vms/${vm.uuid}?action=reprovision`);
    t.same(last?.body, { image_uuid: image });
    t.equal((await client.waitJob(re.job_uuid, FAST)).execution, 'succeeded');
    t.equal((await client.getVm(vm.uuid))?.image_uuid, image);
    await t.rejects(client.reprovisionVm(randomUUID(), image), { statusCode: 404, message: 'VM not found' });

    const del = await client.deleteVm(vm.uuid);
    t.ok(del.job_uuid);
    t.equal(vmapi.requests.at(-1)?.url, `/vms/${vm.uuid}`, 'no query');
    const job = await client.waitJob(del.job_uuid as string, FAST);
    t.match(job.name, /^destroy-/);
    t.equal((await client.getVm(vm.uuid))?.state, 'destroyed', 'VMAPI keeps destroyed VMs');

    t.same(await client.deleteVm(vm.uuid), { vm_uuid: vm.uuid }, 'already destroyed: 200 without job_uuid');
    t.same(await client.deleteVm(randomUUID()), {}, 'unknown VM: nothing to delete');

    // A destroy job failing with ResourceNotFoundError (the VM is gone anyway).
    const gone = vmapi.addVm();
    vmapi.failNextJob('VM not found', 'ResourceNotFoundError');
    const d2 = await client.deleteVm(gone.uuid);
    const j2 = await client.waitJob(d2.job_uuid as string, FAST);
    t.equal(j2.execution, 'failed');
    t.equal(jobErrorName(j2), 'ResourceNotFoundError');
});

void t.test('IMGAPI getImage: manifest or null', async (t) => {
    const imgapi = await startFakeImgapi();
    const client = new ImgapiClient({ url: imgapi.url });
    t.teardown(async () => {
        client.close();
        await imgapi.close();
    });
    const img = imgapi.addImage({ name: 'cmon-agent', version: '1.22.0' });
    const got = await client.getImage(img.uuid);
    t.match(got, {
        uuid: img.uuid,
        name: 'cmon-agent',
        version: '1.22.0',
        type: 'other',
        os: 'other',
        state: 'active',
        public: false,
        files: [{ sha1: /^[0-9a-f]{40}$/, size: Number, compression: 'gzip' }],
    });
    t.equal(imgapi.requests[0]?.headers['accept-version'], '*');
    t.equal(await client.getImage(randomUUID()), null);

    imgapi.failNext('GET /images/:uuid', 500);
    await t.rejects(client.getImage(img.uuid), { statusCode: 502, message: /^IMGAPI error 500: / });
});

void t.test('NAPI listNetworks by name', async (t) => {
    const napi = await startFakeNapi({ networks: [{ name: 'admin' }, { name: 'external', vlan_id: 4 }] });
    const client = new NapiClient({ url: napi.url });
    t.teardown(async () => {
        client.close();
        await napi.close();
    });
    const admin = await client.listNetworks({ name: 'admin' });
    t.equal(admin.length, 1);
    t.match(admin[0], { name: 'admin', uuid: /^[0-9a-f-]{36}$/ });
    t.equal(napi.requests[0]?.url, '/networks?name=admin');
    t.same(await client.listNetworks({ name: 'nope' }), []);
    t.equal((await client.listNetworks()).length, 2);
});
