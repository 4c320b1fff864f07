// The official client (sdc-clients 13 SAPI, Accept-Version ~2) against the server: every method of its lib/sapi.js works end to end.

import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import bunyan from 'bunyan';
import sdc, { type SAPI } from 'sdc-clients';
import t from 'tap';

import { OWNER } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

interface Answer {
    obj: Any;
    res: { statusCode: number; headers: Record<string, string> };
}

/** Call a callback-style client method; resolves with (obj, res), rejects with the client's error. */
function invoke(client: SAPI, method: string, ...args: unknown[]): Promise<Answer> {
    return new Promise((resolve, reject) => {
        (client[method] as (...a: unknown[]) => void).call(client, ...args, (err: Error | null, obj: Any, _req: Any, res: Any) => {
            if (err) {
                reject(err);
            } else {
                resolve({ obj, res });
            }
        });
    });
}

/** The error a client method fails with. */
async function failure(client: SAPI, method: string, ...args: unknown[]): Promise<Any> {
    try {
        await invoke(client, method, ...args);
    } catch (err) {
        return err;
    }
    throw new Error(`${method} did not fail`);
}

async function setup(t: Any): Promise<{ h: Harness; sapi: SAPI }> {
    const h = await startSapi();
    const log = bunyan.createLogger({ name: 'sdc-clients-test', level: 'fatal' });
    const sapi = new sdc.SAPI({ url: h.url, version: '~2', agent: false, log });
    t.teardown(async () => {
        sapi.close();
        await h.close();
    });
    return { h, sapi };
}

t.test('applications: createApplication, listApplications, getApplication, updateApplication, deleteApplication', async (t) => {
    const { sapi } = await setup(t);
    const uuid = randomUUID();
    const created = await invoke(sapi, 'createApplication', 'sdc', OWNER, { uuid, metadata: { a: 1 }, params: { p: 1 } });
    t.equal(created.res.statusCode, 200);
    t.strictSame(created.obj, { uuid, name: 'sdc', owner_uuid: OWNER, metadata: { a: 1 }, params: { p: 1 } });
    const bare = await invoke(sapi, 'createApplication', 'manta', OWNER);
    t.equal(bare.obj.name, 'manta', 'the opts argument is optional');

    t.strictSame((await invoke(sapi, 'listApplications')).obj, [created.obj, bare.obj], 'no filters: GET /applications?');
    t.strictSame((await invoke(sapi, 'listApplications', { name: 'sdc' })).obj, [created.obj]);
    t.strictSame((await invoke(sapi, 'listApplications', { name: 'sdc', owner_uuid: randomUUID() })).obj, []);
    t.strictSame((await invoke(sapi, 'getApplication', uuid)).obj, created.obj);

    const upd = await invoke(sapi, 'updateApplication', uuid, { metadata: { b: 2 } });
    t.strictSame(upd.obj.metadata, { a: 1, b: 2 });
    const del = await invoke(sapi, 'updateApplication', uuid, { action: 'delete', metadata: { a: null } });
    t.strictSame(del.obj.metadata, { b: 2 });

    const gone = await invoke(sapi, 'deleteApplication', uuid);
    t.equal(gone.res.statusCode, 204);
    const err = await failure(sapi, 'getApplication', uuid);
    t.equal(err.statusCode, 404);
    t.equal(err.name, 'ResourceNotFoundError');
    t.equal(err.restCode, 'ResourceNotFound');
    t.equal(err.message, `no such application: ${uuid}`);
});

t.test('services: createService, listServices, getService, updateService, deleteService', async (t) => {
    const { sapi } = await setup(t);
    const app = (await invoke(sapi, 'createApplication', 'sdc', OWNER)).obj;
    const vm = (await invoke(sapi, 'createService', 'imgapi', app.uuid, { params: { image_uuid: randomUUID() } })).obj;
    t.equal(vm.type, 'vm', '~2 sees the type');
    const agent = (await invoke(sapi, 'createService', 'vm-agent', app.uuid, { type: 'agent' })).obj;
    t.equal(agent.type, 'agent');

    t.strictSame((await invoke(sapi, 'listServices')).obj, [vm, agent], '~2 lists agent services too');
    t.strictSame((await invoke(sapi, 'listServices', { application_uuid: app.uuid, name: 'vm-agent' })).obj, [agent]);
    t.strictSame((await invoke(sapi, 'listServices', { type: 'vm' })).obj, [vm]);
    t.strictSame((await invoke(sapi, 'getService', agent.uuid)).obj, agent);
    const upd = await invoke(sapi, 'updateService', vm.uuid, { action: 'replace', params: { image_uuid: agent.uuid } });
    t.strictSame(upd.obj.params, { image_uuid: agent.uuid });
    t.equal((await invoke(sapi, 'deleteService', agent.uuid)).res.statusCode, 204);
    t.equal((await failure(sapi, 'getService', agent.uuid)).statusCode, 404);

    const bad = await failure(sapi, 'createService', 'x', app.uuid, { type: 'zone' });
    t.equal(bad.statusCode, 409);
    t.equal(bad.restCode, 'InvalidArgument');
});

t.test('instances: createInstance(Async), listInstances, getInstance, updateInstance, reprovisionInstance, payloads, deleteInstance', async (t) => {
    const { sapi } = await setup(t);
    const app = (await invoke(sapi, 'createApplication', 'sdc', OWNER, { metadata: { SAPI_URL: 'http://sapi' } })).obj;
    const svc = (await invoke(sapi, 'createService', 'imgapi', app.uuid)).obj;

    const inst = (await invoke(sapi, 'createInstance', svc.uuid, { params: { alias: 'imgapi0' } })).obj;
    t.strictSame(inst, { uuid: inst.uuid, service_uuid: svc.uuid, params: { alias: 'imgapi0' }, type: 'vm' });
    const noOpts = (await invoke(sapi, 'createInstance', svc.uuid)).obj;
    t.equal(noOpts.service_uuid, svc.uuid, 'opts are optional');
    const asyncInst = (await invoke(sapi, 'createInstanceAsync', svc.uuid, { metadata: { x: 1 } })).obj;
    t.strictSame(asyncInst, { uuid: asyncInst.uuid, service_uuid: svc.uuid, metadata: { x: 1 }, type: 'vm' }, 'proto: no job_uuid');

    t.strictSame((await invoke(sapi, 'listInstances')).obj, [inst, noOpts, asyncInst]);
    t.strictSame((await invoke(sapi, 'listInstances', { service_uuid: svc.uuid })).obj, [inst, noOpts, asyncInst]);
    t.strictSame((await invoke(sapi, 'getInstance', inst.uuid)).obj, inst);

    const upd = (await invoke(sapi, 'updateInstance', inst.uuid, { metadata: { m: 1 } })).obj;
    t.strictSame(upd.metadata, { m: 1 });
    const payload = (await invoke(sapi, 'getInstancePayload', inst.uuid)).obj;
    t.strictSame(payload, {
        alias: 'imgapi0',
        owner_uuid: OWNER,
        uuid: inst.uuid,
        brand: 'joyent-minimal',
        customer_metadata: { SAPI_URL: 'http://sapi' },
    });
    t.strictSame((await invoke(sapi, 'getPayload', inst.uuid)).obj, payload);

    const newImage = randomUUID();
    const repro = await invoke(sapi, 'reprovisionInstance', inst.uuid, newImage);
    t.equal(repro.res.statusCode, 200);
    t.match(repro.obj, { uuid: inst.uuid, service_uuid: svc.uuid, metadata: { m: 1 }, params: { alias: 'imgapi0' } });
    t.strictSame(repro.obj, { ...upd, params: { ...upd.params, image_uuid: newImage } }, 'proto upgrade records the new image and nothing else (issue 4)');

    t.equal((await invoke(sapi, 'deleteInstance', inst.uuid)).res.statusCode, 204);
    const err = await failure(sapi, 'deleteInstance', inst.uuid);
    t.equal(err.statusCode, 404);
    t.equal(err.restCode, 'ResourceNotFound');
});

t.test('manifests: createManifest, listManifests, getManifest, deleteManifest, readManifest, loadManifests', async (t) => {
    const { sapi } = await setup(t);
    const m = (await invoke(sapi, 'createManifest', { name: 'registrar', path: '/etc/r.json', template: '{{{R}}}', post_cmd: 'true' })).obj;
    t.strictSame(m, { uuid: m.uuid, name: 'registrar', path: '/etc/r.json', template: '{{{R}}}', post_cmd: 'true', version: '1.0.0' });
    t.strictSame((await invoke(sapi, 'listManifests')).obj, [m]);
    t.strictSame((await invoke(sapi, 'getManifest', m.uuid)).obj, m);
    t.equal((await invoke(sapi, 'deleteManifest', m.uuid)).res.statusCode, 204);
    t.equal((await failure(sapi, 'getManifest', m.uuid)).statusCode, 404);

    const dir = mkdtempSync(join(tmpdir(), 'sapi-manifests-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const name of ['mako', 'minnow']) {
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, 'manifest.json'), JSON.stringify({ name: 'ignored', path: `/opt/${name}/etc/config.json` }));
        writeFileSync(join(dir, name, 'template'), `{"name": "${name}"}`);
    }
    const read = (await invoke(sapi, 'readManifest', join(dir, 'mako'))).obj;
    t.strictSame(read, { name: 'ignored', path: '/opt/mako/etc/config.json', template: '{"name": "mako"}' });
    const loaded: Record<string, string> = (await invoke(sapi, 'loadManifests', dir)).obj;
    t.strictSame(Object.keys(loaded).sort(), ['mako', 'minnow']);
    for (const [name, uuid] of Object.entries(loaded)) {
        const got = (await invoke(sapi, 'getManifest', uuid)).obj;
        t.equal(got.name, name, 'the directory name names the manifest');
        t.equal(got.template, `{"name": "${name}"}`);
    }
});

t.test('getConfig, plain and with If-None-Match (config-agent)', async (t) => {
    const { sapi } = await setup(t);
    const m = (await invoke(sapi, 'createManifest', { name: 'r', path: '/etc/r', template: 'x' })).obj;
    const app = (await invoke(sapi, 'createApplication', 'sdc', OWNER, { metadata: { A: 1 }, manifests: { r: m.uuid } })).obj;
    const svc = (await invoke(sapi, 'createService', 'imgapi', app.uuid)).obj;
    const inst = (await invoke(sapi, 'createInstance', svc.uuid)).obj;

    const cfg = await invoke(sapi, 'getConfig', inst.uuid);
    t.equal(cfg.res.statusCode, 200);
    t.strictSame(cfg.obj.manifests, [m]);
    t.equal(cfg.obj.metadata.A, 1);
    t.equal(cfg.obj.metadata.INSTANCE_UUID, inst.uuid);
    const etag = cfg.res.headers.etag;
    t.match(etag, /^"[0-9a-f]{40}"$/);

    const same = await invoke(sapi, 'getConfig', inst.uuid, { headers: { 'if-none-match': etag } });
    t.equal(same.res.statusCode, 304, 'unchanged → 304');
    await invoke(sapi, 'updateInstance', inst.uuid, { metadata: { B: 2 } });
    const changed = await invoke(sapi, 'getConfig', inst.uuid, { headers: { 'if-none-match': etag } });
    t.equal(changed.res.statusCode, 200, 'changed → 200');
    t.equal(changed.obj.metadata.B, 2);
});

t.test('getMode and setMode', async (t) => {
    const { sapi } = await setup(t);
    t.equal((await invoke(sapi, 'getMode')).obj, 'proto');
    const bad = await failure(sapi, 'setMode', 'proto');
    t.equal(bad.statusCode, 409);
    t.equal(bad.restCode, 'InvalidArgument');
    t.equal(bad.message, 'invalid mode: proto');
    t.equal((await invoke(sapi, 'setMode', 'full')).res.statusCode, 204);
    t.equal((await invoke(sapi, 'getMode')).obj, 'full');
});

t.test('helpers: getApplicationObjects, getOrCreateApplication, getOrCreateService, whatis', async (t) => {
    const { sapi } = await setup(t);
    const dir = mkdtempSync(join(tmpdir(), 'sapi-files-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const appFile = join(dir, 'app.json');
    writeFileSync(appFile, JSON.stringify({ params: { ram: 1 }, metadata: { A: 'a' } }));
    const svcFile = join(dir, 'svc.json');
    writeFileSync(svcFile, JSON.stringify({ params: { image_uuid: randomUUID() }, metadata: { S: 's' } }));

    const app = (await invoke(sapi, 'getOrCreateApplication', 'sdc', OWNER, appFile, { metadata: { B: 'b' } })).obj;
    t.strictSame(app, { uuid: app.uuid, name: 'sdc', owner_uuid: OWNER, params: { ram: 1 }, metadata: { A: 'a', B: 'b' } });
    t.strictSame((await invoke(sapi, 'getOrCreateApplication', 'sdc', OWNER, appFile)).obj, app, 'the second call finds it');
    t.equal((await invoke(sapi, 'listApplications')).obj.length, 1);

    const svc = (await invoke(sapi, 'getOrCreateService', 'vm-agent', app.uuid, [svcFile, join(dir, 'absent.json')], { type: 'agent' })).obj;
    t.equal(svc.type, 'agent');
    t.strictSame(svc.metadata, { S: 's' });
    t.strictSame((await invoke(sapi, 'getOrCreateService', 'vm-agent', app.uuid, svcFile)).obj, svc, 'found, not re-created');
    const vmSvc = (await invoke(sapi, 'createService', 'imgapi', app.uuid)).obj;
    const otherApp = (await invoke(sapi, 'createApplication', 'manta', OWNER)).obj;
    const otherSvc = (await invoke(sapi, 'createService', 'moray', otherApp.uuid)).obj;

    const agentInst = (await invoke(sapi, 'createInstance', svc.uuid, { uuid: randomUUID(), params: { server_uuid: randomUUID(), image_uuid: randomUUID() } }))
        .obj;
    const vmInst = (await invoke(sapi, 'createInstance', vmSvc.uuid)).obj;
    await invoke(sapi, 'createInstance', otherSvc.uuid);

    const objs = (await invoke(sapi, 'getApplicationObjects', app.uuid)).obj;
    t.strictSame(Object.keys(objs.services).sort(), [svc.uuid, vmSvc.uuid].sort());
    t.strictSame(objs.services[svc.uuid], svc);
    t.strictSame(objs.instances, { [svc.uuid]: [agentInst], [vmSvc.uuid]: [vmInst] }, 'only this application’s instances');

    t.equal((await invoke(sapi, 'whatis', app.uuid)).obj.type, 'application');
    const w = (await invoke(sapi, 'whatis', vmSvc.uuid)).obj;
    t.equal(w.type, 'service');
    t.equal(w.uuid, vmSvc.uuid);
    t.equal((await invoke(sapi, 'whatis', agentInst.uuid)).obj.type, 'instance');
    t.equal((await invoke(sapi, 'whatis', randomUUID())).obj, null, 'unknown → null');
});
