// The official client (sdc-clients SAPI) against the service in full mode
// on the Moray backend (fake Moray, fake VMAPI/IMGAPI/NAPI/CNAPI): the
// methods Triton tools use work unchanged.

import bunyan from 'bunyan';
import sdc, { type SAPI } from 'sdc-clients';
import t from 'tap';

import { startFakeMoray } from '../lib/fake-moray.js';
import { OWNER } from '../lib/fixtures.js';
import { startVmEnv } from '../lib/vm-env.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function invoke(client: SAPI, method: string, ...args: unknown[]): Promise<Any> {
    return new Promise((resolve, reject) => {
        (client[method] as (...a: unknown[]) => void).call(client, ...args, (err: Error | null, obj: Any) => (err ? reject(err) : resolve(obj)));
    });
}

t.test('sdc-clients SAPI on the moray backend', async (t) => {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const env = await startVmEnv(t, {
        viaCreateStore: true,
        config: {
            store: { backend: 'moray', path: `${process.env.TMPDIR ?? '/tmp'}/sapi-sdcc-${process.pid}-${Date.now()}.sqlite` },
            moray: { host: moray.host, port: moray.port },
        },
    });
    t.match((await env.h.call('GET', '/ping')).body.storType, /Moray/);
    const sapi = new sdc.SAPI({ url: env.h.url, version: '~2', agent: false, log: bunyan.createLogger({ name: 'sdcc', level: 'fatal' }) });
    t.teardown(() => sapi.close());

    t.equal(await invoke(sapi, 'getMode'), 'full');
    const app = await invoke(sapi, 'createApplication', 'manta', OWNER, { metadata: { A: 1 } });
    t.same(
        (await invoke(sapi, 'listApplications', { name: 'manta' })).map((a: Any) => a.uuid),
        [app.uuid],
    );
    t.equal((await invoke(sapi, 'getApplication', app.uuid)).name, 'manta');
    t.same((await invoke(sapi, 'updateApplication', app.uuid, { metadata: { B: 2 } })).metadata, { A: 1, B: 2 });
    const man = await invoke(sapi, 'createManifest', { name: 'cfg', path: '/etc/cfg', template: '{{A}}' });
    t.equal((await invoke(sapi, 'getManifest', man.uuid)).uuid, man.uuid);
    t.ok((await invoke(sapi, 'listManifests')).some((m: Any) => m.uuid === man.uuid));
    const svc = await invoke(sapi, 'createService', 'storage', app.uuid, { params: { image_uuid: env.image }, manifests: { cfg: man.uuid } });
    t.equal(svc.type, 'vm');
    t.same(
        (await invoke(sapi, 'listServices', { application_uuid: app.uuid })).map((s: Any) => s.uuid),
        [svc.uuid],
    );
    t.same((await invoke(sapi, 'updateService', svc.uuid, { metadata: { S: 1 } })).metadata, { S: 1 });
    const inst = await invoke(sapi, 'createInstance', svc.uuid, { metadata: { I: 1 } });
    t.equal(inst.service_uuid, svc.uuid);
    t.ok(env.vmapi.state.vms.has(inst.uuid), 'provisioned through VMAPI');
    const listed = await invoke(sapi, 'listInstances', { service_uuid: svc.uuid });
    t.same(
        listed.map((i: Any) => i.uuid),
        [inst.uuid],
    );
    const byServer = await invoke(sapi, 'listInstances', { server_uuid: env.server, service_uuid: svc.uuid });
    t.same(
        byServer.map((i: Any) => i.uuid),
        [inst.uuid],
        'the new filters pass through listInstances unchanged',
    );
    t.equal((await invoke(sapi, 'getInstance', inst.uuid)).uuid, inst.uuid);
    const payload = await invoke(sapi, 'getInstancePayload', inst.uuid);
    t.equal(payload.uuid, inst.uuid);
    const cfg = await invoke(sapi, 'getConfig', inst.uuid);
    t.same(cfg.metadata.A, 1);
    t.equal(cfg.manifests[0].uuid, man.uuid);
    t.same((await invoke(sapi, 'updateInstance', inst.uuid, { metadata: { J: 2 } })).metadata, { I: 1, J: 2 });
    await invoke(sapi, 'deleteInstance', inst.uuid);
    await invoke(sapi, 'deleteService', svc.uuid);
    await invoke(sapi, 'deleteApplication', app.uuid);
    await invoke(sapi, 'deleteManifest', man.uuid);
    t.same(await invoke(sapi, 'listApplications', { name: 'manta' }), []);
});
