// A store that cannot be reached: every route that reads or writes data
// answers 503 StoreUnavailable with a JSON body, never a bare 500, in both
// modes. Routes that never touch the store answer as usual, and /ping
// reports the store as unavailable (500, storAvailable false).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { routesOf, type RouteDef } from '../../lib/endpoints/common.js';
import { StoreUnavailableError } from '../../lib/stor/errors.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import type { Store } from '../../lib/stor/store.js';
import { isError } from '../lib/api-assert.js';
import { aManifest, anApplication, anInstance, aService, OWNER } from '../lib/fixtures.js';
import { type CallOpts, type CallResult, type Harness, startSapi } from '../lib/harness.js';

/** Methods that still work while the store is down (start-up and shut-down). */
const KEPT = new Set(['init', 'close', 'capabilities']);
/** Methods whose failure surfaces on the first chunk, as a real backend's does. */
const STREAMING = new Set(['iterate', 'iterateJson']);

/** `down(true)`: every call fails; `down(['count'])`: those methods fail; `down(false)`: the real store. */
type Down = (v: boolean | string[]) => void;

/** A real store until it is switched down; then its calls fail as unavailable. */
function switchable(real: SqliteStore): { store: Store; down: Down } {
    let down: boolean | Set<string> = false;
    const fail = (prop: string): StoreUnavailableError => new StoreUnavailableError(`simulated outage (${prop})`);
    // The store's methods, and those of the JSON lists its capabilities offer, fail alike.
    const guard = <T extends object>(obj: T): T =>
        new Proxy(obj, {
            get(target, prop, receiver) {
                const v = Reflect.get(target, prop, receiver) as unknown;
                if (typeof v !== 'function') {
                    return v;
                }
                const name = String(prop);
                if (down === true ? !KEPT.has(name) : down !== false && down.has(name)) {
                    if (STREAMING.has(name)) {
                        return () => ({
                            [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(fail(name)) }),
                        });
                    }
                    return () => Promise.reject(fail(name));
                }
                if (name === 'capabilities') {
                    return () => {
                        const caps = real.capabilities();
                        return caps.jsonLists ? { ...caps, jsonLists: guard(caps.jsonLists) } : caps;
                    };
                }
                return (v as (...a: unknown[]) => unknown).bind(target);
            },
        });
    const store = guard(real);
    return { store, down: (v) => (down = typeof v === 'boolean' ? v : new Set(v)) };
}

interface Ids {
    app: string;
    svc: string;
    inst: string;
    manifest: string;
    server: string;
}

interface Probe {
    method: string;
    path: string;
    opts?: CallOpts;
}

/** One request per route name, with valid input so that the handler reaches the store. */
function probes(ids: Ids): Record<string, Probe> {
    const rollout = randomUUID();
    const v2 = { version: '~2' };
    return {
        Ping: { method: 'GET', path: '/ping' },
        HeadPing: { method: 'HEAD', path: '/ping' },
        GetMode: { method: 'GET', path: '/mode' },
        SetMode: { method: 'POST', path: '/mode?mode=full' },
        GetLogLevel: { method: 'GET', path: '/loglevel' },
        SetLogLevel: { method: 'POST', path: '/loglevel', opts: { body: { level: 'fatal' } } },
        SyncCache: { method: 'POST', path: '/cache' },

        CreateApplication: { method: 'POST', path: '/applications', opts: { body: { name: 'other', owner_uuid: OWNER } } },
        ListApplications: { method: 'GET', path: '/applications' },
        GetApplication: { method: 'GET', path: `/applications/${ids.app}` },
        UpdateApplication: { method: 'PUT', path: `/applications/${ids.app}`, opts: { body: { metadata: { A: 1 } } } },
        DeleteApplication: { method: 'DELETE', path: `/applications/${ids.app}` },

        CreateService: { method: 'POST', path: '/services', opts: { body: { name: 'other', application_uuid: ids.app }, ...v2 } },
        ListServices: { method: 'GET', path: '/services' },
        GetService: { method: 'GET', path: `/services/${ids.svc}` },
        UpdateService: { method: 'PUT', path: `/services/${ids.svc}`, opts: { body: { metadata: { A: 1 } } } },
        DeleteService: { method: 'DELETE', path: `/services/${ids.svc}` },

        CreateInstance: { method: 'POST', path: '/instances', opts: { body: { service_uuid: ids.svc }, ...v2 } },
        ListInstances: { method: 'GET', path: '/instances' },
        GetInstance: { method: 'GET', path: `/instances/${ids.inst}` },
        GetInstancePayload: { method: 'GET', path: `/instances/${ids.inst}/payload` },
        UpdateInstance: { method: 'PUT', path: `/instances/${ids.inst}`, opts: { body: { metadata: { A: 1 } } } },
        UpgradeInstance: { method: 'PUT', path: `/instances/${ids.inst}/upgrade`, opts: { body: { image_uuid: randomUUID() } } },
        DeleteInstance: { method: 'DELETE', path: `/instances/${ids.inst}` },
        DeleteServerInstances: { method: 'DELETE', path: `/servers/${ids.server}/instances` },

        CreateManifest: {
            method: 'POST',
            path: '/manifests',
            opts: { body: { name: 'other', path: '/opt/other.json', template: '{{{OTHER}}}' } },
        },
        ListManifests: { method: 'GET', path: '/manifests' },
        GetManifest: { method: 'GET', path: `/manifests/${ids.manifest}` },
        DeleteManifest: { method: 'DELETE', path: `/manifests/${ids.manifest}` },

        GetConfigs: { method: 'GET', path: `/configs/${ids.inst}` },

        CreateRollout: { method: 'POST', path: '/rollouts', opts: { body: { service_uuid: ids.svc, image_uuid: randomUUID() }, ...v2 } },
        ListRollouts: { method: 'GET', path: '/rollouts' },
        GetRollout: { method: 'GET', path: `/rollouts/${rollout}` },
        CancelRollout: { method: 'DELETE', path: `/rollouts/${rollout}` },
        PromoteRollout: { method: 'POST', path: `/rollouts/${rollout}/promote`, opts: v2 },
        ResumeRollout: { method: 'POST', path: `/rollouts/${rollout}/resume`, opts: v2 },
        RevertRollout: { method: 'POST', path: `/rollouts/${rollout}/revert`, opts: v2 },
    };
}

type Mode = 'proto' | 'full';

const HTTP_METHOD: Record<RouteDef['method'], string> = { get: 'GET', head: 'HEAD', post: 'POST', put: 'PUT', del: 'DELETE' };

/** What a route answers while the store is down, when that is not 503 StoreUnavailable. */
const NORMAL: Record<string, (t: Test, r: CallResult, mode: Mode) => void> = {
    Ping: (t, r) => {
        t.equal(r.status, 500, 'Ping: 500');
        t.equal(r.body?.storAvailable, false, 'Ping: storAvailable false');
    },
    HeadPing: (t, r) => t.equal(r.status, 500, 'HeadPing: 500, as Ping'),
    GetMode: (t, r, mode) => {
        t.equal(r.status, 200, 'GetMode: 200');
        t.equal(r.body, mode, 'GetMode: the mode');
    },
    GetLogLevel: (t, r) => {
        t.equal(r.status, 200, 'GetLogLevel: 200');
        t.equal(typeof r.body?.level, 'number', 'GetLogLevel: a level');
    },
    SetLogLevel: (t, r) => t.equal(r.status, 200, 'SetLogLevel: 200'),
    // The embedded store has no cache to refresh.
    SyncCache: (t, r) => t.equal(r.status, 204, 'SyncCache: 204'),
};

/** Mode-dependent answers that never reach the store. */
function normalIn(mode: Mode): typeof NORMAL {
    if (mode === 'proto') {
        return {
            ...NORMAL,
            CreateRollout: (t, r) => isError(t, r, 409, 'InvalidArgument', 'rollouts deploy agents and need full mode'),
        };
    }
    // Already full: a no-op.
    return { ...NORMAL, SetMode: (t, r) => t.equal(r.status, 204, 'SetMode: 204 (already full)') };
}

async function setUp(t: Test, mode: Mode): Promise<{ h: Harness; ids: Ids; down: Down }> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const real = new SqliteStore({ path: join(dir, 'sapi.sqlite') });
    await real.init();
    const { store, down } = switchable(real);
    // CNAPI and IMGAPI are configured (never reached): rollouts have their deployer.
    const h = await startSapi({
        store,
        dir,
        config: { cnapi: { url: 'http://127.0.0.1:1' }, imgapi: { url: 'http://127.0.0.1:1' } },
    });
    t.teardown(h.close);
    const app = (await anApplication(h)).uuid as string;
    const svc = (await aService(h, app, { params: { image_uuid: randomUUID() } })).uuid as string;
    const server = randomUUID();
    const inst = (await anInstance(h, svc, { params: { server_uuid: server } })).uuid as string;
    const manifest = (await aManifest(h)).uuid as string;
    if (mode === 'full') {
        t.equal((await h.call('POST', '/mode?mode=full')).status, 204, 'switched to full mode');
    }
    return { h, ids: { app, svc, inst, manifest, server }, down };
}

for (const mode of ['proto', 'full'] as const) {
    t.test(`${mode} mode, store down: every route answers 503 StoreUnavailable or its store-free answer`, async (t) => {
        const { h, ids, down } = await setUp(t, mode);
        const all = probes(ids);
        const routes = new Map<string, RouteDef>(routesOf(h.app.server).map((r) => [r.name, r]));
        t.ok(routes.size >= 33, `the server mounted its routes (${routes.size})`);
        t.strictSame(
            [...routes.keys()].filter((n) => !(n in all)),
            [],
            'every mounted route has a probe',
        );
        t.strictSame(
            Object.keys(all).filter((n) => !routes.has(n)),
            [],
            'every probe is a mounted route',
        );
        for (const [name, p] of Object.entries(all)) {
            const r = routes.get(name);
            const pattern = new RegExp(`^${r?.path.replace(/:[a-z_]+/g, '[^/]+') ?? ''}$`);
            t.ok(r && HTTP_METHOD[r.method] === p.method && pattern.test(p.path.split('?')[0] ?? ''), `${name}: the probe calls ${r?.path}`);
        }

        down(true);
        const normal = normalIn(mode);
        for (const [name, p] of Object.entries(all)) {
            const r = await h.call(p.method, p.path, p.opts);
            const expect = normal[name];
            if (expect) {
                expect(t, r, mode);
                continue;
            }
            isError(t, r, 503, 'StoreUnavailable');
            t.match(r.body?.message, /simulated outage/, `${name}: the message names the store failure (${r.status} ${r.text.slice(0, 160)})`);
        }

        down(false);
        t.equal((await h.call('GET', '/ping')).status, 200, 'the store is back: ping is 200');
        const got = await h.call('GET', `/applications/${ids.app}`);
        t.equal(got.status, 200, 'nothing was deleted while the store was down');
        t.equal((await h.call('GET', `/instances/${ids.inst}`)).status, 200, 'the instance is still there');
    });
}

t.test('DeleteApplication: a failing count() is 503 StoreUnavailable, not a bare 500', async (t) => {
    const { h, ids, down } = await setUp(t, 'proto');
    // Delete its children first so that the delete gets as far as counting them.
    t.equal((await h.call('DELETE', `/instances/${ids.inst}`)).status, 204);
    t.equal((await h.call('DELETE', `/services/${ids.svc}`)).status, 204);
    down(['count']);
    const r = await h.call('DELETE', `/applications/${ids.app}`);
    isError(t, r, 503, 'StoreUnavailable');
    t.match(r.body?.message, /simulated outage \(count\)/, 'the count failed');
    down(false);
    t.equal((await h.call('GET', `/applications/${ids.app}`)).status, 200, 'still there');
});
