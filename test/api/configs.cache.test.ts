// GetConfigs answers from the config cache: every write that changes a
// config changes the ETag at once; writes that do not leave the tag and the
// kept entry alone; a 304 (and an unchanged 200) reads nothing from the
// store; on Moray, other writers' changes show within the bound, and while
// Moray is down the answers stay those of the local copy.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { ConfigCache, SHARED_STORE_REVALIDATE_MS } from '../../lib/model/config-cache.js';
import { buildConfig, configEtag } from '../../lib/model/config-doc.js';
import { withIndexes } from '../../lib/model/instance-records.js';
import type { Instance } from '../../lib/model/types.js';
import type { BucketName } from '../../lib/stor/buckets.js';
import { BUCKETS } from '../../lib/stor/buckets.js';
import { ForwardingStore } from '../../lib/stor/forwarding.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import type { Filter, JsonObject, Page, PageRequest, Store, Stored } from '../../lib/stor/store.js';
import { agentWorld } from '../lib/agent-world.js';
import { isError } from '../lib/api-assert.js';
import { startFakeMoray } from '../lib/fake-moray.js';
import { aManifest, anAgentService, anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

/** The real store, counting the reads that reach it. */
class CountingStore extends ForwardingStore {
    reads = 0;

    constructor(private readonly real: Store) {
        super();
    }

    get inner(): Store {
        return this.real;
    }

    override get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        this.reads++;
        return super.get<T>(bucket, uuid);
    }

    override find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        this.reads++;
        return super.find<T>(bucket, filter, page);
    }
}

async function counted(t: Test): Promise<{ h: Harness; store: CountingStore }> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const real = new SqliteStore({ path: join(dir, 'sapi.sqlite') });
    await real.init();
    const store = new CountingStore(real);
    const h = await startSapi({ store, dir });
    t.teardown(h.close);
    return { h, store };
}

const unquote = (tag: string | null): string => (tag ?? '').replace(/^"|"$/g, '');

/** The served tag (unquoted); fails on anything but 200. */
async function tagOf(t: Test, h: Harness, uuid: string): Promise<string> {
    const r = await h.call('GET', `/configs/${uuid}`);
    t.equal(r.status, 200, `GET /configs/${uuid}: 200`);
    return unquote(r.headers.get('etag'));
}

/** The tag of a document assembled now, straight from the store (no cache). */
async function freshTag(h: Harness, uuid: string): Promise<string> {
    return configEtag(await buildConfig(h.ctx, uuid));
}

function cacheOf(h: Harness): ConfigCache {
    const c = h.ctx.configs;
    if (!(c instanceof ConfigCache)) {
        throw new Error('the app has no config cache');
    }
    return c;
}

t.test('a 304, If-Match and a repeated 200 read nothing from the store', async (t) => {
    const { h, store } = await counted(t);
    const m = await aManifest(h);
    const app = await anApplication(h, { metadata: { A: 1 }, manifests: { registrar: m.uuid } });
    const svc = await aService(h, app.uuid, { metadata: { S: 1 } });
    const inst = await anInstance(h, svc.uuid, { metadata: { I: 1 } });

    store.reads = 0;
    const first = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(first.status, 200);
    t.ok(store.reads >= 4, `the first GET assembles the document (${store.reads} reads)`);
    const tag = first.headers.get('etag') as string;

    store.reads = 0;
    const nm = await h.call('GET', `/configs/${inst.uuid}`, { headers: { 'if-none-match': tag } });
    t.equal(nm.status, 304);
    t.equal(nm.headers.get('etag'), tag, 'the 304 carries the tag');
    t.equal(nm.text, '');
    const again = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(again.status, 200);
    t.equal(again.text, first.text, 'the same JSON');
    t.equal(again.headers.get('etag'), tag);
    t.match(again.headers.get('content-type'), /^application\/json/);
    t.equal(again.headers.get('content-length'), String(Buffer.byteLength(first.text)));
    t.equal((await h.call('GET', `/configs/${inst.uuid}`, { headers: { 'if-match': tag } })).status, 200);
    isError(t, await h.call('GET', `/configs/${inst.uuid}`, { headers: { 'if-match': '"0000"' } }), 412, 'PreconditionFailed');
    t.equal(store.reads, 0, 'no store read after the first');
});

t.test('every write that changes a config changes its tag at once; the served tag is always a fresh assembly', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const m1 = await aManifest(h, { name: 'one' });
    const m2 = await aManifest(h, { name: 'two' });
    const m3 = await aManifest(h, { name: 'three' });
    const app = await anApplication(h, { metadata: { A: 1 }, manifests: { one: m1.uuid } });
    const svc = await aService(h, app.uuid, { metadata: { S: 1 } });
    const sibling = await aService(h, app.uuid, { metadata: { S: 'sibling' } });
    const inst = (await anInstance(h, svc.uuid, { metadata: { I: 1, GONE: 'soon' } })).uuid as string;
    const mate = (await anInstance(h, svc.uuid)).uuid as string;
    const cousin = (await anInstance(h, sibling.uuid)).uuid as string;
    const all = [inst, mate, cousin];
    const tags = new Map<string, string>();
    for (const u of all) {
        tags.set(u, await tagOf(t, h, u));
    }

    /** After a write: the served tag is the fresh one, new exactly for `changed`. */
    const check = async (what: string, changed: string[]): Promise<void> => {
        for (const u of all) {
            const before = tags.get(u) as string;
            const r = await h.call('GET', `/configs/${u}`, { headers: { 'if-none-match': `"${before}"` } });
            const fresh = await freshTag(h, u);
            if (changed.includes(u)) {
                t.equal(r.status, 200, `${what}: ${u === inst ? 'the instance' : u === mate ? 'its service mate' : 'its cousin'} gets 200`);
                t.not(fresh, before, `${what}: the document did change`);
            } else {
                t.equal(r.status, 304, `${what}: ${u === inst ? 'the instance' : u === mate ? 'its service mate' : 'its cousin'} still gets 304`);
            }
            const served = r.status === 200 ? unquote(r.headers.get('etag')) : before;
            t.equal(served, fresh, `${what}: the served tag is that of a fresh assembly`);
            tags.set(u, served);
        }
    };
    const ok = async (method: string, path: string, body: unknown, status = 200): Promise<void> => {
        const r = await h.call(method, path, { body, version: '~2' });
        t.equal(r.status, status, `${method} ${path}: ${status}${r.status === status ? '' : ` (got ${r.text.slice(0, 200)})`}`);
    };

    await ok('PUT', `/instances/${inst}`, { metadata: { I: 2 } });
    await check('instance metadata', [inst]);
    await ok('PUT', `/instances/${inst}`, { params: { server_uuid: randomUUID() } });
    await check('instance params (SERVER_UUID)', [inst]);
    await ok('PUT', `/instances/${inst}`, { manifests: { two: m2.uuid } });
    await check('instance manifests', [inst]);
    await ok('PUT', `/instances/${inst}`, { action: 'delete', metadata: { GONE: true } });
    await check('instance metadata key deleted', [inst]);
    await ok('PUT', `/instances/${inst}`, { action: 'replace', metadata: { ONLY: 'this' } });
    await check('instance metadata replaced', [inst]);

    await ok('PUT', `/services/${svc.uuid}`, { metadata: { S: 2 } });
    await check('service metadata', [inst, mate]);
    // The instance names its own "two": the service's does not reach it.
    await ok('PUT', `/services/${svc.uuid}`, { manifests: { two: m3.uuid } });
    await check('service manifest that the instance overrides', [mate]);

    await ok('PUT', `/applications/${app.uuid}`, { metadata: { A: 2 } });
    await check('application metadata', all);
    await ok('PUT', `/applications/${app.uuid}`, { manifests: { three: m3.uuid } });
    await check('application manifests', all);

    // There is no UpdateManifest route: a manifest changes when rewritten in the
    // store (2.1.2's data, another tool) or deleted and created again.
    await h.store.put(BUCKETS.manifests.name, { ...m1, template: '{{{CHANGED}}}' });
    await check('a referenced manifest rewritten', all);
    await h.store.del(BUCKETS.manifests.name, m1.uuid);
    for (const u of all) {
        isError(t, await h.call('GET', `/configs/${u}`), 404, 'ResourceNotFound', `no such manifest: ${m1.uuid}`);
    }
    await ok('POST', '/manifests', { uuid: m1.uuid, name: 'one', path: m1.path, template: '{{{AGAIN}}}' });
    await check('a referenced manifest deleted and created again with the same uuid', all);

    await ok('DELETE', `/instances/${inst}`, undefined, 204);
    isError(t, await h.call('GET', `/configs/${inst}`), 404, 'ResourceNotFound', `no such instance: ${inst}`);
    await ok('POST', '/instances', { uuid: inst, service_uuid: svc.uuid, metadata: { REBORN: true } });
    await check('the instance deleted and created again with the same uuid', [inst]);

    // A move to the other service: the instance now follows that service's metadata.
    await h.store.put(
        BUCKETS.instances.name,
        withIndexes({ ...((await h.store.get<Instance>(BUCKETS.instances.name, inst))?.value as Instance), service_uuid: sibling.uuid }),
    );
    await check('the instance moved to another service', [inst]);
    await ok('PUT', `/services/${sibling.uuid}`, { metadata: { S: 'sibling 2' } });
    await check("its new service's metadata", [inst, cousin]);
});

t.test('writes that do not change a config leave its tag and its entry alone', async (t) => {
    const { h, store } = await counted(t);
    const m = await aManifest(h);
    const app = await anApplication(h, { metadata: { A: 1 }, manifests: { registrar: m.uuid } });
    const svc = await aService(h, app.uuid);
    const other = await aService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid);
    const neighbour = await anInstance(h, svc.uuid);
    const stranger = await anInstance(h, other.uuid);
    const otherApp = await anApplication(h, { name: 'manta' });
    const tag = await tagOf(t, h, inst.uuid);

    const writes: [string, () => Promise<unknown>][] = [
        ['another instance of its service', () => h.call('PUT', `/instances/${neighbour.uuid}`, { body: { metadata: { X: 1 } } })],
        ['an instance of another service', () => h.call('PUT', `/instances/${stranger.uuid}`, { body: { metadata: { X: 1 } } })],
        ["another service's metadata", () => h.call('PUT', `/services/${other.uuid}`, { body: { metadata: { X: 1 } } })],
        ['another application', () => h.call('PUT', `/applications/${otherApp.uuid}`, { body: { metadata: { X: 1 } } })],
        ['an unreferenced manifest created', () => aManifest(h, { name: 'unused' })],
        ['an instance created', () => anInstance(h, svc.uuid)],
        ['an instance deleted', () => h.call('DELETE', `/instances/${stranger.uuid}`)],
    ];
    for (const [what, write] of writes) {
        await write();
        store.reads = 0;
        const r = await h.call('GET', `/configs/${inst.uuid}`, { headers: { 'if-none-match': `"${tag}"` } });
        t.equal(r.status, 304, `${what}: still 304`);
        t.equal(store.reads, 0, `${what}: answered from the kept entry`);
    }
    t.equal(await freshTag(h, inst.uuid), tag, 'and the kept tag is still the fresh one');
});

t.test('UpgradeInstance and DELETE /servers/:uuid/instances drop the entries they touch', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    const server = randomUUID();
    const inst = (await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, params: { server_uuid: server, image_uuid: randomUUID() } } })).body;
    const cache = cacheOf(h);
    const tag = await tagOf(t, h, inst.uuid);
    t.ok(cache.lookup(inst.uuid, false), 'kept after a GET');

    // Proto mode: the upgrade is record-only (the image is not part of the document).
    const up = await h.call('PUT', `/instances/${inst.uuid}/upgrade`, { body: { image_uuid: randomUUID() }, version: '~2' });
    t.equal(up.status, 200, `UpgradeInstance: 200 ${up.status === 200 ? '' : up.text}`);
    t.equal(cache.lookup(inst.uuid, false), null, 'the upgrade dropped the entry');
    t.equal(await tagOf(t, h, inst.uuid), await freshTag(h, inst.uuid), 'the served tag is a fresh assembly');
    t.equal(await tagOf(t, h, inst.uuid), tag, 'which, the image not being in the document, is unchanged');

    const del = await h.call('DELETE', `/servers/${server}/instances`);
    t.equal(del.status, 200, `DeleteServerInstances: 200 ${del.status === 200 ? '' : del.text}`);
    t.equal(cache.lookup(inst.uuid, false), null, 'forgetting the server dropped the entry');
    isError(t, await h.call('GET', `/configs/${inst.uuid}`), 404, 'ResourceNotFound', `no such instance: ${inst.uuid}`);
});

t.test('agent adoption under a new uuid: the old config is gone, the new one carries the metadata', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await anAgentService(h, app.uuid);
    const server = randomUUID();
    const adopt = (uuid: string): Promise<unknown> =>
        h.call('POST', '/instances', { body: { service_uuid: svc.uuid, uuid, params: { server_uuid: server, image_uuid: randomUUID() } } });
    const oldUuid = randomUUID();
    await adopt(oldUuid);
    await h.call('PUT', `/instances/${oldUuid}`, { body: { metadata: { KEEP: 'me' } } });
    const oldTag = await tagOf(t, h, oldUuid);

    // The same uuid again: an upsert of params; the served tag follows.
    await adopt(oldUuid);
    t.equal(await tagOf(t, h, oldUuid), await freshTag(h, oldUuid), 'a re-registration: the tag is a fresh assembly');

    const newUuid = randomUUID();
    await adopt(newUuid);
    isError(
        t,
        await h.call('GET', `/configs/${oldUuid}`, { headers: { 'if-none-match': `"${oldTag}"` } }),
        404,
        'ResourceNotFound',
        `no such instance: ${oldUuid}`,
    );
    const cfg = await h.call('GET', `/configs/${newUuid}`);
    t.equal(cfg.status, 200);
    t.equal(cfg.body.metadata.KEEP, 'me');
    t.equal(cfg.body.metadata.INSTANCE_UUID, newUuid);
});

t.test('a rollout drops the entries of the instances it upgrades', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 10 });
    t.teardown(w.close);
    const svc = w.svc['vm-agent']?.uuid as string;
    const insts: string[] = [];
    for (let i = 0; i < 3; i++) {
        const server = w.cnapi.addServer().uuid;
        const r = await w.h.call('POST', '/instances', { body: { service_uuid: svc, params: { server_uuid: server } }, version: '~2' });
        t.equal(r.status, 200, `CreateInstance: 200 ${r.status === 200 ? '' : r.text}`);
        insts.push(r.body.uuid as string);
    }
    const cache = cacheOf(w.h);
    for (const u of insts) {
        await tagOf(t, w.h, u);
        t.ok(cache.lookup(u, false), 'kept');
    }
    const img = w.newImage('vm-agent');
    const r = await w.h.call('POST', '/rollouts', { body: { service_uuid: svc, image_uuid: img, concurrency: 3 }, version: '~2' });
    t.equal(r.status, 200, `CreateRollout: 200 ${r.status === 200 ? '' : r.text}`);
    let done = r.body;
    while (done.state === 'running') {
        await new Promise((res) => setTimeout(res, 20));
        done = (await w.h.call('GET', `/rollouts/${r.body.uuid}`, { version: '~2' })).body;
    }
    t.equal(done.state, 'succeeded');
    for (const u of insts) {
        t.equal(cache.lookup(u, false), null, 'the rollout dropped the entry');
        t.equal(await tagOf(t, w.h, u), await freshTag(w.h, u), 'the served tag is a fresh assembly');
    }
});

t.test('moray: other writers show within the bound; SetMode migration and an outage answer as before', async (t) => {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const path = `${process.env.TMPDIR ?? '/tmp'}/sapi-cfgcache-${process.pid}-${Date.now()}.sqlite`;
    t.teardown(() => rmSync(path, { force: true }));
    const h = await startSapi({ viaCreateStore: true, config: { store: { backend: 'moray', path }, moray: { host: moray.host, port: moray.port } } });
    t.teardown(h.close);
    t.equal(cacheOf(h).shared, true, 'on moray the cache knows other processes write');

    // Proto mode on the embedded store, then SetMode full copies everything into Moray.
    const app = await anApplication(h, { metadata: { A: 1 } });
    const svc = await aService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid, { metadata: { I: 1 } });
    const before = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal((await h.call('POST', '/mode?mode=full')).status, 204);
    const after = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(after.status, 200);
    t.equal(after.headers.get('etag'), before.headers.get('etag'), 'the migration changes no config');
    t.same(after.body, before.body);

    // Writes through this SAPI: at once.
    t.equal((await h.call('PUT', `/instances/${inst.uuid}`, { body: { metadata: { I: 2 } } })).status, 200);
    const mine = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(mine.body.metadata.I, 2, 'a write through this SAPI shows at once');

    // Another SAPI writes Moray: seen once the bound has passed.
    const other = new MorayStore({ connect: { host: moray.host, port: moray.port, connectTimeoutMs: 1000 } });
    t.teardown(() => other.close());
    await other.init();
    const cur = (await other.get<Instance>(BUCKETS.instances.name, inst.uuid))?.value as Instance;
    // How long that takes is the cache's bound, checked on a fake clock in
    // test/unit/model.config-cache.test.ts; here only that it happens (tap's
    // timeout ends the wait if it never does).
    await other.put(BUCKETS.instances.name, withIndexes({ ...cur, metadata: { I: 3 } }));
    let seen = await h.call('GET', `/configs/${inst.uuid}`);
    while (seen.body.metadata.I !== 3) {
        await new Promise((r) => setTimeout(r, 50));
        seen = await h.call('GET', `/configs/${inst.uuid}`);
    }
    t.equal(seen.body.metadata.I, 3, "another writer's change shows");
    t.equal(unquote(seen.headers.get('etag')), await freshTag(h, inst.uuid));

    // Moray down: answers from the kept entry, then, past the bound, from the local copy.
    t.equal((await h.call('POST', '/cache')).status, 204, 'the local copy is filled');
    await moray.stop();
    const during = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(during.status, 200);
    t.equal(during.headers.get('etag'), seen.headers.get('etag'));
    await new Promise((r) => setTimeout(r, SHARED_STORE_REVALIDATE_MS + 100));
    const later = await h.call('GET', `/configs/${inst.uuid}`, { headers: { 'if-none-match': seen.headers.get('etag') as string } });
    t.equal(later.status, 304, 'past the bound: assembled again from the local copy, unchanged');
    const write = await h.call('PUT', `/instances/${inst.uuid}`, { body: { metadata: { C: 3 } } });
    t.equal(write.status, 503, 'writes fail as before');
    const afterFailed = await h.call('GET', `/configs/${inst.uuid}`);
    t.equal(afterFailed.status, 200, 'a failed write leaves GetConfig answering');
    t.same(afterFailed.body, seen.body, 'with the same document');
    await moray.start();
});
