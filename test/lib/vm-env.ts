// A full-mode SAPI wired to fake VMAPI, IMGAPI, NAPI and CNAPI, with an
// application and a vm service whose image is in the fake IMGAPI: the
// setting of the test/api/instances.vm-*.test.ts files.

import { startFakeCnapi, type FakeCnapi } from './fake-cnapi.js';
import { startFakeImgapi, type FakeImgapi } from './fake-imgapi.js';
import { startFakeNapi, type FakeNapi } from './fake-napi.js';
import { startFakeVmapi, type FakeVmapi } from './fake-vmapi.js';
import { aService, anApplication } from './fixtures.js';
import { startSapi, type CallResult, type Harness } from './harness.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = any;

export interface VmEnv {
    h: Harness;
    vmapi: FakeVmapi;
    imgapi: FakeImgapi;
    napi: FakeNapi;
    cnapi: FakeCnapi;
    app: Obj;
    svc: Obj;
    /** The service's image (present in IMGAPI). */
    image: string;
    /** The server VMAPI places VMs on (present in CNAPI). */
    server: string;
    /** The `admin` network's uuid in NAPI. */
    adminNet: string;
    /** POST /instances (v2 view) for the env's service. */
    create(body?: Record<string, unknown>, query?: string, headers?: Record<string, string>): Promise<CallResult>;
    /** The instance record as GET /instances/:uuid returns it (v2), or null on 404. */
    record(uuid: string): Promise<Obj>;
}

export interface VmEnvOptions {
    /** config.deploy overrides. Defaults: poll 20 ms, job deadline 2 s, request timeout 1 s. */
    deploy?: Record<string, number>;
    /** Leave out a downstream service from the config. */
    without?: ('imgapi' | 'napi' | 'cnapi')[];
    /** Extra service params (merged over `{image_uuid}`). */
    svcParams?: Record<string, unknown>;
    jobDurationMs?: number;
    /** Extra config (e.g. a moray store) and harness options. */
    config?: Record<string, unknown>;
    viaCreateStore?: boolean;
}

interface HasTeardown {
    teardown(fn: () => unknown): void;
}

export async function startVmEnv(t: HasTeardown, opts: VmEnvOptions = {}): Promise<VmEnv> {
    const vmapi = await startFakeVmapi({ jobDurationMs: opts.jobDurationMs ?? 40 });
    const imgapi = await startFakeImgapi();
    const napi = await startFakeNapi({ networks: [{ name: 'admin' }, { name: 'external' }] });
    const cnapi = await startFakeCnapi();
    const server = vmapi.defaultServerUuid;
    cnapi.addServer({ uuid: server });
    const image = imgapi.addImage({ name: 'sapi', type: 'zone-dataset', os: 'smartos' }).uuid;
    const adminNet = [...napi.state.networks.values()].find((n) => n.name === 'admin')?.uuid ?? '';

    const without = new Set(opts.without ?? []);
    const config: Record<string, unknown> = {
        mode: 'full',
        vmapi: { url: vmapi.url },
        deploy: { jobPollIntervalMs: 20, jobDeadlineMs: 2000, downstreamTimeoutMs: 1000, ...opts.deploy },
    };
    if (!without.has('imgapi')) config.imgapi = { url: imgapi.url };
    if (!without.has('napi')) config.napi = { url: napi.url };
    if (!without.has('cnapi')) config.cnapi = { url: cnapi.url };
    const h = await startSapi({ config: { ...config, ...opts.config }, ...(opts.viaCreateStore ? { viaCreateStore: true } : {}) });
    t.teardown(async () => {
        await h.close();
        await Promise.all([vmapi.close(), imgapi.close(), napi.close(), cnapi.close()]);
    });

    const app = await anApplication(h);
    const svc = await aService(h, app.uuid, { name: 'sapi', params: { image_uuid: image, ...opts.svcParams } });
    return {
        h,
        vmapi,
        imgapi,
        napi,
        cnapi,
        app,
        svc,
        image,
        server,
        adminNet,
        create: (body = {}, query = '', headers = {}) =>
            h.call('POST', `/instances${query}`, { body: { service_uuid: svc.uuid, ...body }, version: '~2', headers }),
        record: async (uuid) => {
            const r = await h.call('GET', `/instances/${uuid}`, { version: '~2' });
            return r.status === 200 ? r.body : null;
        },
    };
}
