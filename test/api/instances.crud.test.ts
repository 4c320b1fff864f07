// Instances (vm, proto mode): create/list/get/upgrade/delete shapes and statuses, and every create error in order.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, anApplication, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('a minimal vm instance is {uuid, service_uuid} (+ type in v2); type in the body is ignored', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);

    const v2 = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, type: 'agent' }, version: '~2' });
    t.equal(v2.status, 200);
    t.strictSame(v2.body, { uuid: v2.body.uuid, service_uuid: svc.uuid, type: 'vm' }, 'the type comes from the service');

    const v1 = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid } });
    t.equal(v1.status, 200);
    t.strictSame(v1.body, { uuid: v1.body.uuid, service_uuid: svc.uuid }, 'v1 view omits type');

    t.strictSame((await h.call('GET', `/instances/${v2.body.uuid}`, { version: '~2' })).body, v2.body);
    t.strictSame((await h.call('GET', `/instances/${v2.body.uuid}`)).body, { uuid: v2.body.uuid, service_uuid: svc.uuid });
});

t.test('every accepted field is returned; proto async=true gives the same body without job_uuid', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const m = await aManifest(h);
    const uuid = randomUUID();
    const body = {
        uuid,
        service_uuid: svc.uuid,
        params: { alias: 'imgapi0', ram: 1024 },
        metadata: { PORT: 80 },
        manifests: { registrar: m.uuid },
        master: true,
        bogus: 'x',
    };
    const r = await h.call('POST', '/instances?async=true', { body, version: '~2' });
    t.equal(r.status, 200);
    const rest: Record<string, unknown> = { ...body };
    delete rest.bogus;
    t.strictSame(r.body, { ...rest, type: 'vm' });
    t.notOk('job_uuid' in r.body, 'no job in proto mode');
    t.strictSame((await h.call('GET', `/instances/${uuid}`, { version: '~2' })).body, r.body);

    const adopt = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid: randomUUID(), exists: true }, version: '~2' });
    t.equal(adopt.status, 200, 'exists: true with a uuid just records in proto mode');
    t.notOk('exists' in adopt.body, 'the internal exists flag is never shown');
    const notAdopt = await h.call('POST', '/instances?exists=false', { body: { service_uuid: svc.uuid }, version: '~2' });
    t.equal(notAdopt.status, 200, 'exists=false (a query string) is false: no uuid needed (D5)');
});

t.test('ListInstances filters by service_uuid; an unknown service lists []', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const s1 = await aService(h, app.uuid);
    const s2 = await aService(h, app.uuid);
    const mk = async (svc: string): Promise<unknown> => (await h.call('POST', '/instances', { body: { service_uuid: svc }, version: '~2' })).body;
    const i1 = await mk(s1.uuid);
    const i2 = await mk(s2.uuid);
    const i3 = await mk(s1.uuid);

    const list = async (q: string): Promise<{ status: number; body: unknown }> => h.call('GET', `/instances${q}`, { version: '~2' });
    t.strictSame((await list('')).body, [i1, i2, i3]);
    t.strictSame((await list(`?service_uuid=${s1.uuid}`)).body, [i1, i3]);
    const unknown = await list(`?service_uuid=${randomUUID()}`);
    t.equal(unknown.status, 200);
    t.strictSame(unknown.body, []);
});

t.test('GetInstance and DeleteInstance of an unknown uuid are 404 no such instance (with a body)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = randomUUID();
    isError(t, await h.call('GET', `/instances/${uuid}`), 404, 'ResourceNotFound', `no such instance: ${uuid}`);
    isError(t, await h.call('DELETE', `/instances/${uuid}`), 404, 'ResourceNotFound', `no such instance: ${uuid}`);
});

t.test('DeleteInstance answers 204 with no body and removes the record', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const inst = (await h.call('POST', '/instances', { body: { service_uuid: svc.uuid } })).body;
    const r = await h.call('DELETE', `/instances/${inst.uuid}`);
    t.equal(r.status, 204);
    t.equal(r.text, '');
    t.equal((await h.call('GET', `/instances/${inst.uuid}`)).status, 404);
});

t.test('create errors come in order: missing keys, manifests, service; nothing is written', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const noSvc = randomUUID();
    const noManifest = randomUUID();
    const post = (body: Record<string, unknown>) => h.call('POST', '/instances', { body, version: '~2' });

    isError(t, await post({}), 409, 'MissingParameter', 'missing required keys: service_uuid');
    isError(t, await post({ service_uuid: noSvc, manifests: { m: noManifest } }), 404, 'ResourceNotFound', `no such manifest: ${noManifest}`);
    isError(t, await post({ service_uuid: noSvc }), 404, 'ResourceNotFound', `no such service: ${noSvc}`);
    isError(t, await post({ service_uuid: svc.uuid, exists: true }), 409, 'MissingParameter', 'missing required keys: uuid');
    isError(t, await post({ service_uuid: 'imgapi' }), 409, 'InvalidArgument', 'service_uuid must be a UUID');
    isError(t, await post({ service_uuid: svc.uuid, uuid: '../../etc' }), 409, 'InvalidArgument', 'uuid must be a UUID');
    isError(t, await post({ service_uuid: svc.uuid, params: 'x' }), 409, 'InvalidArgument', 'params must be object');
    isError(t, await post({ service_uuid: svc.uuid, metadata: 7 }), 409, 'InvalidArgument', 'metadata must be object');
    isError(t, await post({ service_uuid: svc.uuid, params: { image_uuid: 'latest' } }), 409, 'InvalidArgument', 'params.image_uuid must be a UUID');
    t.strictSame((await h.call('GET', '/instances', { version: '~2' })).body, [], 'nothing was written');
});

t.test('a second vm instance with an existing uuid is 409 and the first is untouched', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const uuid = randomUUID();
    const first = await h.call('POST', '/instances', { body: { uuid, service_uuid: svc.uuid, metadata: { a: 1 } }, version: '~2' });
    t.equal(first.status, 200);
    isError(
        t,
        await h.call('POST', '/instances', { body: { uuid, service_uuid: svc.uuid }, version: '~2' }),
        409,
        'InvalidArgument',
        `instance already exists: ${uuid}`,
    );
    t.strictSame((await h.call('GET', `/instances/${uuid}`, { version: '~2' })).body, first.body);
});

t.test('UpgradeInstance (proto, vm): image_uuid required, 404 for a missing instance, 200 with the instance unchanged', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const inst = (await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, params: { alias: 'a0' } }, version: '~2' })).body;

    isError(t, await h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: {} }), 409, 'MissingParameter', 'missing image_uuid');
    const missing = randomUUID();
    isError(
        t,
        await h.call('PUT', `/instances/${missing}/upgrade`, { body: { image_uuid: randomUUID() } }),
        404,
        'ResourceNotFound',
        `no such instance: ${missing}`,
    );
    isError(t, await h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: { image_uuid: 'x' } }), 409, 'InvalidArgument', 'image_uuid must be a UUID');

    const image = randomUUID();
    const r = await h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: { image_uuid: image }, version: '~2' });
    t.equal(r.status, 200);
    const otherParams = { ...r.body.params };
    delete otherParams.image_uuid;
    t.strictSame({ ...r.body, params: otherParams }, inst, 'nothing but (at most) params.image_uuid differs');
    t.strictSame((await h.call('GET', `/instances/${inst.uuid}`, { version: '~2' })).body, r.body, 'the answer is the stored record');
    // Decision (issue 4): params.image_uuid is kept current by UpgradeInstance, also when nothing deploys.
    t.equal(r.body.params.image_uuid, image, 'params.image_uuid follows the upgrade');
});
