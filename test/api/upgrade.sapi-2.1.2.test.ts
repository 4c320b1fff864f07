// Upgrade acceptance: SAPI-TS started on the Moray that SAPI 2.1.2 left
// behind (test/lib/sapi-212-dump.ts: every sapi_* bucket as 2.1.2 wrote it,
// loaded into a fake Moray through the Moray protocol), with the config
// file rendered from sapi_manifests/sapi/template (no `mode` key).
//
// It must come up in full mode, answer every list and search exactly as the
// dumped values say, keep answering the agents' old-style registrations,
// survive restarts, and say 503 (not [] or 404) while Moray is unreachable
// with nothing cached yet.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import t, { type Test } from 'tap';

import type { JsonObject } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';
import { startSapi, type CallResult, type Harness } from '../lib/harness.js';
import {
    agentsWithoutParams,
    applications,
    byUuid,
    duplicatePairs,
    instances,
    instancesByImage,
    instancesByServer,
    instancesByServiceServer,
    instanceView,
    loadDump,
    manifests,
    pairKey,
    serverOf,
    services,
    serviceView,
    type DumpInstance,
} from '../lib/sapi-212-dump.js';

const V2 = '~2';
const TMP = mkdtempSync(join(tmpdir(), 'sapi-212-upgrade-'));
t.teardown(() => rmSync(TMP, { recursive: true, force: true }));

let cacheSeq = 0;
/** A new (not yet existing) local cache file. */
const newCache = (): string => join(TMP, `cache-${++cacheSeq}.sqlite`);

const SAPI_ZONE = randomUUID();
const HEADNODE = randomUUID();

/**
 * The config file as config-agent renders sapi_manifests/sapi/template in
 * the sapi zone, but Moray reached directly (the fake) instead of through
 * binder, and a fresh local cache file. No `mode` key unless asked.
 */
function templateConfig(fake: FakeMoray, cachePath: string, mode?: 'proto' | 'full'): Record<string, unknown> {
    return {
        port: 0,
        datacenter_name: 'us-test-1',
        instanceUuid: SAPI_ZONE,
        serverUuid: HEADNODE,
        adminIp: '127.0.0.1',
        metricsPort: 0,
        log_level: 'info',
        store: { backend: 'moray', path: cachePath },
        moray: { host: fake.host, port: fake.port },
        vmapi: { url: 'http://vmapi.us-test-1.example.com' },
        cnapi: { url: 'http://cnapi.us-test-1.example.com' },
        imgapi: { url: 'http://imgapi.us-test-1.example.com' },
        napi: { url: 'http://napi.us-test-1.example.com' },
        ...(mode ? { mode } : {}),
    };
}

/** A fresh fake Moray holding exactly what 2.1.2 left. */
async function loadedFake(t: Test): Promise<FakeMoray> {
    const fake = await startFakeMoray();
    t.teardown(() => fake.close());
    await loadDump(fake);
    return fake;
}

/** SAPI-TS on `fake`, built as bin/sapi.ts builds it (createStore). */
async function boot(t: Test, fake: FakeMoray, cachePath = newCache(), mode?: 'proto' | 'full'): Promise<Harness> {
    // Start-up waits 1 s (not 10 s) for a Moray that does not answer, then retries every 200 ms.
    const h = await startSapi({ viaCreateStore: true, config: templateConfig(fake, cachePath, mode), storeOptions: { morayWaitMs: 1000, retryMs: 200 } });
    let closed = false;
    const close = async (): Promise<void> => {
        if (!closed) {
            closed = true;
            await h.close();
        }
    };
    t.teardown(close);
    return { ...h, close };
}

// ---- comparing answers with the dump

const uuidsOf = (list: unknown): string[] => (Array.isArray(list) ? list.map((o) => String((o as JsonObject).uuid)) : []);
const sorted = (l: string[]): string[] => [...l].sort();

/** A list answer equals `expected` (as a set of uuids, and object by object). */
function sameList(t: Test, what: string, res: CallResult, expected: JsonObject[]): void {
    t.equal(res.status, 200, `${what}: 200`);
    const got = Array.isArray(res.body) ? (res.body as JsonObject[]) : [];
    if (!Array.isArray(res.body)) {
        t.fail(`${what}: body is not an array: ${res.text.slice(0, 200)}`);
    }
    const gotUuids = uuidsOf(got);
    const want = byUuid(expected);
    t.equal(new Set(gotUuids).size, gotUuids.length, `${what}: no duplicates`);
    t.equal(got.length, expected.length, `${what}: count`);
    t.equal(res.headers.get('x-joyent-resource-count'), String(expected.length), `${what}: x-joyent-resource-count`);
    const missing = [...want.keys()].filter((u) => !gotUuids.includes(u)).sort();
    const extra = gotUuids.filter((u) => !want.has(u)).sort();
    t.strictSame(
        { missing: missing.length, extra: extra.length },
        { missing: 0, extra: 0 },
        `${what}: same uuid set (missing e.g. ${JSON.stringify(missing.slice(0, 3))}, extra e.g. ${JSON.stringify(extra.slice(0, 3))})`,
    );
    const differ = got.filter((o) => want.has(String(o.uuid)) && !isDeepStrictEqual(o, want.get(String(o.uuid))));
    t.equal(differ.length, 0, `${what}: every object equals its dumped value`);
    const first = differ[0];
    if (first) {
        t.strictSame(first, want.get(String(first.uuid)), `${what}: first differing object (${String(first.uuid)}) of ${differ.length}`);
    }
}

/** GET /instances with Accept-Version `version` (null: none, the v1 view). */
async function listInstances(h: Harness, query: string, version: string | null = V2): Promise<CallResult> {
    return h.call('GET', `/instances${query}`, version === null ? {} : { version });
}

/** Run `fn` over `items`, `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    await Promise.all(
        Array.from({ length: n }, async () => {
            while (next < items.length) {
                const i = items[next++] as T;
                await fn(i);
            }
        }),
    );
}

const ALL_INSTANCES = instances();
const V2_INSTANCES = ALL_INSTANCES.map((i) => instanceView(i, true));
const V1_INSTANCES = ALL_INSTANCES.filter((i) => i.type === 'vm').map((i) => instanceView(i, false));

/** GET /instances (v2) equals the dump (or `expected`). */
async function instancesEqualDump(t: Test, h: Harness, what: string, expected = V2_INSTANCES): Promise<void> {
    sameList(t, `${what}: GET /instances (v2)`, await listInstances(h, ''), expected);
}

function mustFind<T>(v: T | undefined, what: string): T {
    if (v === undefined) {
        throw new Error(`the dump has no ${what}`);
    }
    return v;
}

const SERVICES = services();
const agentService = (name: string): JsonObject =>
    mustFind(
        SERVICES.find((s) => s.name === name && s.type === 'agent'),
        `agent service ${name}`,
    );

// ---- the tests

t.test('2.1.2 data, read-only: mode, lists, searches, paging, GetConfig', async (t) => {
    const fake = await loadedFake(t);
    const h = await boot(t, fake);

    t.test('GET /ping and GET /mode say full', async (t) => {
        const ping = await h.call('GET', '/ping');
        t.equal(ping.status, 200, 'ping 200');
        t.equal(ping.body?.mode, 'full', 'ping: mode full');
        t.equal(ping.body?.storAvailable, true, 'ping: store available');
        t.match(String(ping.body?.storType), /Moray/, 'ping: storType names Moray');
        const mode = await h.call('GET', '/mode');
        t.equal(mode.status, 200, 'GET /mode 200');
        t.equal(mode.body, 'full', 'GET /mode: "full"');
    });

    t.test('every list equals the dump', async (t) => {
        const apps = applications();
        sameList(t, 'GET /applications', await h.call('GET', '/applications'), apps);
        sameList(t, 'GET /applications (v2)', await h.call('GET', '/applications', { version: V2 }), apps);
        sameList(
            t,
            'GET /services (v2)',
            await h.call('GET', '/services', { version: V2 }),
            SERVICES.map((s) => serviceView(s, true)),
        );
        sameList(
            t,
            'GET /services (v1: type=vm, no type field)',
            await h.call('GET', '/services'),
            SERVICES.filter((s) => s.type === 'vm').map((s) => serviceView(s, false)),
        );
        sameList(t, 'GET /manifests', await h.call('GET', '/manifests'), manifests());
        await instancesEqualDump(t, h, 'upgrade');
        sameList(t, 'GET /instances (v1: type=vm, no type field)', await listInstances(h, '', null), V1_INSTANCES);
        sameList(
            t,
            'GET /instances?type=agent (v2)',
            await listInstances(h, '?type=agent'),
            ALL_INSTANCES.filter((i) => i.type === 'agent').map((i) => instanceView(i, true)),
        );
    });

    t.test('every server_uuid search equals the dumped params', async (t) => {
        const byServer = instancesByServer();
        t.equal(byServer.size, 22, 'the dump has 22 servers');
        const got = new Map<string, { status: number; uuids: string[]; count: string | null }>();
        await pool([...byServer.keys()], 4, async (server) => {
            const r = await listInstances(h, `?server_uuid=${server}`);
            got.set(server, { status: r.status, uuids: sorted(uuidsOf(r.body)), count: r.headers.get('x-joyent-resource-count') });
        });
        for (const [server, want] of byServer) {
            const g = got.get(server);
            t.strictSame(g, { status: 200, uuids: want, count: String(want.length) }, `server_uuid=${server}: ${want.length} instances`);
        }
    });

    t.test('every image_uuid search equals the dumped params', async (t) => {
        const byImage = instancesByImage();
        const got = new Map<string, { status: number; uuids: string[]; count: string | null }>();
        await pool([...byImage.keys()], 4, async (image) => {
            const r = await listInstances(h, `?image_uuid=${image}`);
            got.set(image, { status: r.status, uuids: sorted(uuidsOf(r.body)), count: r.headers.get('x-joyent-resource-count') });
        });
        for (const [image, want] of byImage) {
            t.strictSame(got.get(image), { status: 200, uuids: want, count: String(want.length) }, `image_uuid=${image}: ${want.length} instances`);
        }
    });

    t.test('every (service_uuid, server_uuid) pair equals the dumped params', async (t) => {
        const pairs = instancesByServiceServer();
        const wrong: { pair: string; status: number; got: string[]; want: string[] }[] = [];
        await pool([...pairs.entries()], 4, async ([key, want]) => {
            const [svc, server] = key.split('/') as [string, string];
            const r = await listInstances(h, `?service_uuid=${svc}&server_uuid=${server}`);
            const got = sorted(uuidsOf(r.body));
            if (r.status !== 200 || !isDeepStrictEqual(got, want)) {
                wrong.push({ pair: key, status: r.status, got, want });
            }
        });
        t.equal(pairs.size, 238, 'the dump has 238 (service, server) pairs');
        t.equal(wrong.length, 0, `all ${pairs.size} pairs answer exactly their dumped instances`);
        if (wrong.length > 0) {
            t.strictSame(wrong.slice(0, 3), [], `first wrong pairs (of ${wrong.length})`);
        }
    });

    t.test('paging by server_uuid with limit and marker', async (t) => {
        const byServer = instancesByServer();
        const [server, want] = [...byServer.entries()].sort((a, b) => b[1].length - a[1].length)[0] as [string, string[]];
        t.equal(want.length, 33, 'busiest server has 33 instances');
        const limit = 10;
        const seen: string[] = [];
        let marker: string | undefined;
        for (let page = 0; page < 10; page++) {
            const r = await listInstances(h, `?server_uuid=${server}&limit=${limit}${marker ? `&marker=${marker}` : ''}`);
            t.equal(r.status, 200, `page ${page}: 200`);
            t.equal(r.headers.get('x-joyent-resource-count'), String(want.length), `page ${page}: x-joyent-resource-count is the total`);
            const uuids = uuidsOf(r.body);
            t.strictSame(uuids, sorted(uuids), `page ${page}: in uuid order`);
            t.ok(uuids.length <= limit, `page ${page}: at most ${limit}`);
            t.ok(
                uuids.every((u) => marker === undefined || u > marker),
                `page ${page}: starts after the marker`,
            );
            seen.push(...uuids);
            if (uuids.length < limit) {
                break;
            }
            marker = uuids[uuids.length - 1];
        }
        t.equal(seen.length, want.length, 'pages hold every instance once');
        t.strictSame(sorted(seen), want, 'union of the pages equals the dump');
    });

    t.test('GetConfigs for a vm, an agent with params, an agent without params', async (t) => {
        const vm = mustFind(
            ALL_INSTANCES.find((i) => i.type === 'vm' && serverOf(i)),
            'vm instance',
        );
        const agent = mustFind(
            ALL_INSTANCES.find((i) => i.type === 'agent' && serverOf(i)),
            'agent instance with params',
        );
        const bare = mustFind(agentsWithoutParams()[0], 'agent instance without params');
        t.equal(agentsWithoutParams().length, 47, 'the dump has 47 agent instances without params');
        for (const [what, inst] of [
            ['vm', vm],
            ['agent with params', agent],
            ['agent without params', bare],
        ] as [string, DumpInstance][]) {
            const r = await h.call('GET', `/configs/${inst.uuid}`);
            t.equal(r.status, 200, `GetConfigs ${what} (${inst.uuid}): 200 (${r.status === 200 ? 'ok' : r.text.slice(0, 200)})`);
            t.type(r.body?.metadata, 'object', `GetConfigs ${what}: has metadata`);
            const g = await h.call('GET', `/instances/${inst.uuid}`, { version: V2 });
            t.equal(g.status, 200, `GetInstance ${what}: 200`);
            t.strictSame(g.body, instanceView(inst, true), `GetInstance ${what}: the dumped value`);
        }
    });
});

t.test('old-style agent registration and the 2.1.2 suite\'s "put/get/del agent instance"', async (t) => {
    const fake = await loadedFake(t);
    const h = await boot(t, fake);

    t.test('POST /instances {service_uuid, uuid}, no Accept-Version, no params', async (t) => {
        const svc = agentService('vm-agent');
        const NEW = randomUUID();
        const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid: NEW } });
        t.equal(r.status, 200, `adoption answers 200 (got ${r.status} ${r.text.slice(0, 200)})`);
        t.equal(r.body?.uuid, NEW, 'answers the new instance');
        t.equal(r.body?.service_uuid, svc.uuid, 'of the service');
        const g = await h.call('GET', `/instances/${NEW}`);
        t.equal(g.status, 200, 'GET /instances/NEW: 200');
        t.equal(g.body?.service_uuid, svc.uuid, 'GET /instances/NEW: its service');
        const v2 = await h.call('GET', `/instances/${NEW}`, { version: V2 });
        t.equal(v2.body?.type, 'agent', 'recorded as an agent instance');
        const c = await h.call('GET', `/configs/${NEW}`);
        t.equal(c.status, 200, 'GET /configs/NEW: 200');
        const list = await listInstances(h, '');
        t.equal(list.status, 200);
        t.equal(uuidsOf(list.body).length, ALL_INSTANCES.length + 1, 'the list has the dump plus the new instance');
    });

    t.test('put/get/del agent instance (v1, no params)', async (t) => {
        const app_uuid = randomUUID();
        const svc_uuid = randomUUID();
        const owner = String(applications()[0]?.owner_uuid);
        const app = await h.call('POST', '/applications', {
            version: '*',
            body: { name: 'empty_test_application', owner_uuid: owner, uuid: app_uuid, params: {} },
        });
        t.equal(app.status, 200, 'create application');
        const svc = await h.call('POST', '/services', {
            version: '*',
            body: { name: 'empty_agent_service', application_uuid: app_uuid, uuid: svc_uuid, type: 'agent' },
        });
        t.equal(svc.status, 200, 'create agent service');
        const man = await h.call('POST', '/manifests', {
            version: '*',
            body: { path: '/var/tmp/config.json', template: '{ logLevel: "debug" }', name: 'more_or_less_empty test config' },
        });
        t.equal(man.status, 200, 'create manifest');
        const cfg_uuid = String(man.body?.uuid);

        const inst = {
            uuid: randomUUID(),
            service_uuid: svc_uuid,
            metadata: { string_val: 'my string', num_val: 123, bool_val: true, array_val: [1, 2, 3], obj_val: { foo: 'baz' } },
            manifests: { my_service: cfg_uuid },
        };
        const uri = `/instances/${inst.uuid}`;
        const check = (what: string, obj: JsonObject | undefined): void => {
            t.equal(obj?.uuid, inst.uuid, `${what}: uuid`);
            t.equal(obj?.service_uuid, inst.service_uuid, `${what}: service_uuid`);
            t.strictSame(obj?.metadata, inst.metadata, `${what}: metadata`);
            t.strictSame(obj?.manifests, { my_service: cfg_uuid }, `${what}: manifests`);
        };
        const inArray = (what: string, r: CallResult): void => {
            t.equal(r.status, 200, `${what}: 200`);
            const found = (Array.isArray(r.body) ? (r.body as JsonObject[]) : []).find((o) => o.uuid === inst.uuid);
            t.ok(found, `${what}: found instance ${inst.uuid}`);
            if (found) {
                check(what, found);
            }
        };

        t.equal((await h.call('GET', uri)).status, 404, 'GET before create: 404');
        const bad = await h.call('POST', '/instances', { body: { ...inst, manifests: { my_service: randomUUID() } } });
        t.equal(bad.status, 404, 'unknown manifest: 404 (2.1.2: 500)');
        t.equal((await h.call('GET', uri)).status, 404, 'nothing written by the refused create');

        const created = await h.call('POST', '/instances', { body: inst });
        t.equal(created.status, 200, `create: 200 (got ${created.status} ${created.text.slice(0, 200)})`);
        check('create', created.body);
        const got = await h.call('GET', uri);
        t.equal(got.status, 200, 'get: 200');
        check('get', got.body);
        inArray('list ?service_uuid', await h.call('GET', `/instances?service_uuid=${svc_uuid}`));
        inArray('list ?type=agent', await h.call('GET', '/instances?type=agent'));
        t.equal((await h.call('GET', `${uri}/payload`)).status, 200, 'payload: 200');
        const cfg = await h.call('GET', `/configs/${inst.uuid}`);
        t.equal(cfg.status, 200, 'configs: 200');
        t.type(cfg.body?.metadata, 'object', 'configs: has metadata');

        // common.testUpdates
        let u = await h.call('PUT', uri, { body: { action: 'update', params: { foo: 'baz' }, metadata: { foo: 'bar' } } });
        t.equal(u.status, 200, 'update: 200');
        t.equal(u.body?.params?.foo, 'baz');
        t.equal(u.body?.metadata?.foo, 'bar');
        u = await h.call('PUT', uri, { body: { action: 'delete', params: { foo: ' ' }, metadata: { foo: ' ' } } });
        t.equal(u.status, 200, 'delete keys: 200');
        t.notOk(u.body?.params?.foo);
        t.notOk(u.body?.metadata?.foo);
        u = await h.call('PUT', uri, { body: { action: 'update', params: { oldparam: 'oldvalue' }, metadata: { oldmd: 'oldvalue' } } });
        t.equal(u.status, 200, 'update again: 200');
        t.equal(u.body?.params?.oldparam, 'oldvalue');
        t.equal(u.body?.metadata?.oldmd, 'oldvalue');
        u = await h.call('PUT', uri, { body: { action: 'replace', params: { newparam: 'newvalue' }, metadata: { newmd: 'newvalue' } } });
        t.equal(u.status, 200, 'replace: 200');
        t.strictSame(u.body?.params, { newparam: 'newvalue' }, 'replace: params');
        t.strictSame(u.body?.metadata, { newmd: 'newvalue' }, 'replace: metadata');

        const del = await h.call('DELETE', uri);
        t.equal(del.status, 204, `delete: 204 (got ${del.status} ${del.text.slice(0, 200)})`);
        t.equal((await h.call('GET', uri)).status, 404, 'get after delete: 404');
        t.equal((await h.call('DELETE', `/manifests/${cfg_uuid}`)).status, 204, 'delete manifest');
        t.equal((await h.call('DELETE', `/services/${svc_uuid}`)).status, 204, 'delete service');
        t.equal((await h.call('DELETE', `/applications/${app_uuid}`)).status, 204, 'delete application');
    });
});

t.test('a reinstalled agent replaces its 2.1.2 instances', async (t) => {
    const fake = await loadedFake(t);
    const h = await boot(t, fake);
    const byPair = instancesByServiceServer();
    const byUuidAll = byUuid(ALL_INSTANCES);

    const reinstall = async (t: Test, service_uuid: string, server_uuid: string): Promise<void> => {
        const old = byPair.get(pairKey(service_uuid, server_uuid)) ?? [];
        t.ok(old.length > 0, `the dump has ${old.length} instance(s) of ${service_uuid} on ${server_uuid}`);
        const oldMetadata = Object.assign({}, ...old.map((u) => (byUuidAll.get(u)?.metadata as JsonObject | undefined) ?? {})) as JsonObject;
        const NEW = randomUUID();
        const image = randomUUID();
        const r = await h.call('POST', '/instances', { body: { service_uuid, uuid: NEW, params: { server_uuid, image_uuid: image } } });
        t.equal(r.status, 200, `registration answers 200 (got ${r.status} ${r.text.slice(0, 200)})`);
        t.equal(r.body?.uuid, NEW, 'answers the new uuid');
        const pair = await listInstances(h, `?service_uuid=${service_uuid}&server_uuid=${server_uuid}`);
        t.equal(pair.status, 200);
        t.strictSame(uuidsOf(pair.body), [NEW], '(service, server) now has only the new instance');
        for (const u of old) {
            t.equal((await h.call('GET', `/instances/${u}`)).status, 404, `old instance ${u}: 404`);
        }
        const g = await h.call('GET', `/instances/${NEW}`, { version: V2 });
        t.equal(g.status, 200, 'new instance readable');
        t.equal(g.body?.params?.server_uuid, server_uuid, 'new instance: server_uuid');
        t.equal(g.body?.params?.image_uuid, image, 'new instance: image_uuid');
        t.equal(g.body?.type, 'agent', 'new instance: type agent');
        t.match(g.body?.metadata ?? {}, oldMetadata, `new instance carries the old metadata ${JSON.stringify(oldMetadata)}`);
        t.equal((await h.call('GET', `/configs/${NEW}`)).status, 200, 'GetConfigs of the new instance: 200');
        const byImage = await listInstances(h, `?image_uuid=${image}`);
        t.strictSame(uuidsOf(byImage.body), [NEW], 'found by its new image');
    };

    const dup = mustFind(duplicatePairs()[0], '(service, server) pair with two instances');
    t.ok(duplicatePairs().length >= 1, `the dump has ${duplicatePairs().length} pairs with two instances of one agent service`);
    await t.test(`two 2.1.2 instances of one agent on one server (${dup.uuids.join(', ')})`, (t) => reinstall(t, dup.service_uuid, dup.server_uuid));

    // No duplicate pair has metadata in the dump; an agent instance that has some:
    const withMd = mustFind(
        ALL_INSTANCES.find(
            (i) =>
                i.type === 'agent' &&
                serverOf(i) &&
                i.metadata !== undefined &&
                (byPair.get(pairKey(i.service_uuid, serverOf(i) as string))?.length ?? 0) === 1,
        ),
        'agent instance with metadata',
    );
    await t.test(`an agent instance with metadata (${withMd.uuid})`, (t) => reinstall(t, withMd.service_uuid, serverOf(withMd) as string));

    const after = await listInstances(h, '');
    t.equal(uuidsOf(after.body).length, ALL_INSTANCES.length - dup.uuids.length - 1 + 2, 'instance count after the two reinstalls');
});

t.test('restarts: same or new cache, with or without mode in the config', async (t) => {
    const fake = await loadedFake(t);
    const shared = newCache();
    const runs: [string, string, 'proto' | 'full' | undefined][] = [
        ['first start, no mode key', shared, undefined],
        ['same cache, no mode key', shared, undefined],
        ['same cache, mode full', shared, 'full'],
        ['same cache, mode proto', shared, 'proto'],
        ['new cache, no mode key', newCache(), undefined],
        ['new cache, mode full', newCache(), 'full'],
        ['new cache, mode proto', newCache(), 'proto'],
    ];
    for (const [what, cache, mode] of runs) {
        const h = await boot(t, fake, cache, mode);
        const m = await h.call('GET', '/mode');
        t.equal(m.body, 'full', `${what}: GET /mode full`);
        t.equal((await h.call('GET', '/ping')).body?.mode, 'full', `${what}: ping mode full`);
        await instancesEqualDump(t, h, what);
        await h.close();
    }
});

t.test('moray down at start-up with an empty cache: 503, then recovery', async (t) => {
    // The upgrade's config (no mode key), and one that says full: both at
    // once, to share the wait for Moray.
    const vm = mustFind(
        ALL_INSTANCES.find((i) => i.type === 'vm'),
        'vm instance',
    );
    const scenario = async (mode: 'full' | undefined): Promise<void> => {
        const p = `[config mode: ${mode ?? '(none)'}]`;
        const fake = await loadedFake(t);
        await fake.stop();
        const started = Date.now();
        const h = await boot(t, fake, newCache(), mode);
        t.comment(`${p} startSapi took ${Date.now() - started} ms with moray down`);

        for (const [what, r] of [
            ['GET /instances (v2)', await listInstances(h, '')],
            ['GET /instances (v1)', await listInstances(h, '', null)],
            [`GET /configs/${vm.uuid}`, await h.call('GET', `/configs/${vm.uuid}`)],
            [`GET /instances/${vm.uuid}`, await h.call('GET', `/instances/${vm.uuid}`)],
            ['GET /applications', await h.call('GET', '/applications')],
            ['GET /services (v2)', await h.call('GET', '/services', { version: V2 })],
            ['GET /manifests', await h.call('GET', '/manifests')],
        ] as [string, CallResult][]) {
            t.equal(r.status, 503, `${p} ${what} while moray is down: 503 (got ${r.status} ${r.text.slice(0, 120)})`);
            t.equal(r.body?.code, 'StoreUnavailable', `${p} ${what}: JSON body with code StoreUnavailable`);
        }

        await fake.start();
        // Until it has recovered (tap's timeout bounds the wait; the client's reconnect backs off).
        let r = await listInstances(h, '');
        while (!(r.status === 200 && uuidsOf(r.body).length === ALL_INSTANCES.length)) {
            await new Promise((res) => setTimeout(res, 250));
            r = await listInstances(h, '');
        }
        t.comment(`${p} recovered ${Date.now() - started} ms after start`);
        await instancesEqualDump(t, h, `${p} after moray came back`);
        t.equal((await h.call('GET', '/mode')).body, 'full', `${p} after moray came back: mode full`);
        t.equal((await h.call('GET', `/configs/${vm.uuid}`)).status, 200, `${p} after moray came back: GetConfigs 200`);
    };
    await Promise.all([scenario(undefined), scenario('full')]);
});

t.test('the backfill shows in /ping and /metrics; a filled cache then answers while moray is down', async (t) => {
    const fake = await loadedFake(t);
    // Hold the backfill's writes so its progress can be watched.
    const release = fake.block('batch');
    const cache = newCache();
    const h = await boot(t, fake, cache);
    const port = await h.app.listenMetrics(0, '127.0.0.1');
    const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    while (fake.held('batch') === 0) {
        await new Promise((r) => setTimeout(r, 20));
    }
    const during = await h.call('GET', '/ping');
    t.equal(during.status, 200);
    t.equal(during.body.storUpgrade?.sapi_instances?.phase, 'backfilling', '/ping: the instances bucket is being backfilled');
    t.type(during.body.storUpgrade?.sapi_instances?.backfill?.scanned, 'number', '/ping: rows scanned so far');
    t.match(await metrics(), /sapi_moray_bucket_ready\{[^}]*bucket="sapi_instances"[^}]*\} 0/, '/metrics: not ready yet');
    const [server, want] = mustFind([...instancesByServer()].sort((a, b) => b[1].length - a[1].length)[0], 'a server');
    const found = await listInstances(h, `?server_uuid=${server}`);
    t.same(uuidsOf(found.body).sort(), [...want].sort(), 'searches stay exact while the backfill runs');

    release();
    let ping = await h.call('GET', '/ping');
    while (ping.body.storUpgrade !== undefined) {
        await new Promise((r) => setTimeout(r, 50));
        ping = await h.call('GET', '/ping');
    }
    t.equal(ping.body.storUpgrade, undefined, '/ping: storUpgrade gone once every bucket is ready');
    const withParams = ALL_INSTANCES.filter((i) => serverOf(i) !== undefined || typeof (i.params as JsonObject | undefined)?.image_uuid === 'string').length;
    const text = await metrics();
    t.match(text, /sapi_moray_bucket_ready\{[^}]*bucket="sapi_instances"[^}]*\} 1/, '/metrics: ready');
    t.match(
        text,
        new RegExp(`sapi_moray_backfill_rows\\{[^}]*bucket="sapi_instances"[^}]*kind="rewritten"[^}]*\\} ${withParams}\\b`),
        `/metrics: ${withParams} rows rewritten`,
    );
    for (const row of fake.state.buckets.get('sapi_instances')?.rows.values() ?? []) {
        const v = JSON.parse(row.json) as JsonObject;
        const s = serverOf(v);
        if (s !== undefined && v.server_uuid !== s) {
            t.fail(`row ${String(v.uuid)} has no server_uuid copy`);
        }
    }

    // The cache is filled (at start-up, and again here); a restart with Moray down serves from it.
    t.equal((await h.call('POST', '/cache')).status, 204);
    await h.close();
    await fake.stop();
    const again = await boot(t, fake, cache);
    t.equal((await again.call('GET', '/mode')).body, 'full', 'mode recorded in the cache: full');
    await instancesEqualDump(t, again, 'moray down, filled cache');
    t.equal((await again.call('GET', `/configs/${(ALL_INSTANCES[0] as DumpInstance).uuid}`)).status, 200, 'GetConfig from the cache');
    await again.close();
});
