// Upgrading SAPI 2.1.2's version-0 buckets: rows written before the update
// are found by server_uuid/image_uuid once reindexed, and every search made
// while the reindex runs (or after a restart in the middle of it) is
// complete, although Moray's new index is still partial then.

import { randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import type { InitLogger } from '../../lib/stor/moray/buckets-init.js';
import { connectMoray, type MorayClient } from '../../lib/stor/moray/client.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { and, eq, oneOf, type JsonObject, type Store } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';

const id = (): string => randomUUID();
const INSTANCES = BUCKETS.instances.name;
const APPLICATIONS = BUCKETS.applications.name;

/** SAPI 2.1.2's buckets: no version, its indexes (applications: uuid only). */
const LEGACY: Record<string, Record<string, { type: string; unique?: boolean }>> = {
    sapi_applications: { uuid: { type: 'string', unique: true } },
    sapi_services: {
        uuid: { type: 'string', unique: true },
        name: { type: 'string' },
        application_uuid: { type: 'string' },
        type: { type: 'string' },
    },
    sapi_instances: { uuid: { type: 'string', unique: true }, service_uuid: { type: 'string' }, type: { type: 'string' } },
    sapi_manifests: { uuid: { type: 'string', unique: true } },
};

interface LogEntry {
    level: string;
    msg: string | undefined;
    fields: object;
}

function captureLog(): { log: InitLogger; entries: LogEntry[] } {
    const entries: LogEntry[] = [];
    const at = (level: string) => (fields: object, msg?: string) => void entries.push({ level, msg, fields });
    return { log: { info: at('info'), warn: at('warn'), error: at('error') }, entries };
}

interface Legacy {
    fake: FakeMoray;
    raw: MorayClient;
    servers: string[];
    images: string[];
    /** Instance uuids by server, in creation order. */
    byServer: Map<string, string[]>;
    byImage: Map<string, string[]>;
    svc: string;
    app: { uuid: string; name: string; owner_uuid: string };
}

/** A fake Moray holding what SAPI 2.1.2 left: version-0 buckets and 230 instances. */
async function legacyMoray(t: Test): Promise<Legacy> {
    const fake = await startFakeMoray();
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    t.teardown(async () => {
        await raw.close();
        await fake.close();
    });
    for (const [name, index] of Object.entries(LEGACY)) {
        await raw.createBucket(name, { index: index as never });
    }
    await raw.createBucket('sapi_history', { index: { uuid: { type: 'string' } } });
    await raw.putObject('sapi_history', 'h1', { uuid: 'h1' });

    const servers = [id(), id(), id()];
    const images = [id(), id()];
    const byServer = new Map<string, string[]>(servers.map((s) => [s, []]));
    const byImage = new Map<string, string[]>(images.map((i) => [i, []]));
    const svc = id();
    for (let i = 0; i < 230; i++) {
        const server = servers[i % 3] as string;
        const image = images[i % 2] as string;
        const uuid = id();
        await raw.putObject(INSTANCES, uuid, {
            uuid,
            service_uuid: i % 5 === 0 ? svc : id(),
            type: i % 4 === 0 ? 'agent' : 'vm',
            server_uuid: server,
            image_uuid: image,
            params: { alias: `inst${i}` },
        });
        byServer.get(server)?.push(uuid);
        byImage.get(image)?.push(uuid);
    }
    const app = { uuid: id(), name: 'sdc', owner_uuid: id() };
    await raw.putObject(APPLICATIONS, app.uuid, app);
    await raw.putObject(APPLICATIONS, id(), { uuid: id(), name: 'other', owner_uuid: id() });
    return { fake, raw, servers, images, byServer, byImage, svc, app };
}

async function rawMatches(raw: MorayClient, filter: string): Promise<number> {
    return (await raw.findAll(INSTANCES, filter, { limit: 1000 })).length;
}

function uuidsOf(items: { value: JsonObject }[]): string[] {
    return items.map((s) => s.value.uuid as string);
}

/** Every search by the new indexes gives the complete, exact answer. */
async function checkSearches(t: Test, store: Store, l: Legacy, when: string): Promise<void> {
    for (const [server, want] of l.byServer) {
        const page = await store.find(INSTANCES, eq('server_uuid', server));
        t.same(uuidsOf(page.items), want, `${when}: find by server_uuid, in creation order`);
        t.equal(page.total, want.length, `${when}: total by server_uuid`);
        t.equal(await store.count(INSTANCES, eq('server_uuid', server)), want.length, `${when}: count by server_uuid`);
    }
    for (const [image, want] of l.byImage) {
        t.equal(await store.count(INSTANCES, eq('image_uuid', image)), want.length, `${when}: count by image_uuid`);
    }
    const server = l.servers[0] as string;
    const want = l.byServer.get(server) as string[];
    const sorted = [...want].sort();
    const p1 = await store.find(INSTANCES, eq('server_uuid', server), { limit: 10 });
    t.same(uuidsOf(p1.items), sorted.slice(0, 10), `${when}: first page by server_uuid`);
    t.equal(p1.total, want.length, `${when}: page total`);
    const p2 = await store.find(INSTANCES, eq('server_uuid', server), { limit: 10, marker: sorted[9] });
    t.same(uuidsOf(p2.items), sorted.slice(10, 20), `${when}: second page by server_uuid`);

    const chunks: number[] = [];
    for await (const c of store.iterate(INSTANCES, eq('image_uuid', l.images[0] as string), 40)) {
        chunks.push(c.length);
    }
    t.equal(
        chunks.reduce((a, b) => a + b, 0),
        (l.byImage.get(l.images[0] as string) as string[]).length,
        `${when}: iterate by image_uuid sees every row`,
    );

    const combined = await store.find(INSTANCES, and(eq('service_uuid', l.svc), oneOf('server_uuid', [server])));
    t.same(
        uuidsOf(combined.items),
        want.filter((u) => combined.items.some((s) => s.value.uuid === u)),
        `${when}: combined filter in creation order`,
    );
    t.ok(combined.items.length > 0, `${when}: combined filter finds rows`);
    t.ok(
        combined.items.every((s) => s.value.service_uuid === l.svc && s.value.server_uuid === server),
        `${when}: combined filter is exact`,
    );

    const apps = await store.find(APPLICATIONS, eq('name', 'sdc'));
    t.same(uuidsOf(apps.items), [l.app.uuid], `${when}: application by name (a field 2.1.2 never indexed)`);
    t.equal(await store.count(APPLICATIONS, eq('owner_uuid', l.app.owner_uuid)), 1, `${when}: application by owner_uuid`);
}

/** Waits for `cond`; the limit only turns a hang into a clear message (a wait takes milliseconds). */
async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > end) {
            throw new Error(`timed out waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, 5));
    }
}

/** Let one held reindex call of the instances bucket through; hold the next. */
async function reindexOneBatch(fake: FakeMoray, release: () => void): Promise<() => void> {
    await until('a held reindex call', () => fake.held('reindexObjects') > 0);
    const stale = staleRows(fake);
    const next = fake.block('reindexObjects', onInstances);
    release();
    await until('one reindex batch', () => staleRows(fake) === stale - 50);
    return next;
}

/** Only the instances bucket's reindex is held; the others run freely. */
const onInstances = (args: unknown[]): boolean => args[0] === INSTANCES;

function staleRows(fake: FakeMoray): number {
    const b = fake.state.buckets.get(INSTANCES);
    return [...(b?.rows.values() ?? [])].filter((r) => r._rver === null || r._rver < (b?.options.version ?? 0)).length;
}

t.test('2.1.2 rows are found by server_uuid and image_uuid after upgrade and reindex', async (t) => {
    const l = await legacyMoray(t);
    const { fake, raw } = l;
    const server = l.servers[0] as string;

    await t.rejects(raw.findAll(INSTANCES, `(server_uuid=${server})`), { name: 'MorayRequestError' }, 'not indexed in 2.1.2');

    let release = fake.block('reindexObjects', onInstances);
    const { log, entries } = captureLog();
    const store = new MorayStore({
        connect: { host: fake.host, port: fake.port },
        log,
        reindexBatchSize: 50,
        retryMinDelayMs: 10,
    });
    t.teardown(() => store.close());
    await store.init();

    const b = fake.state.buckets.get(INSTANCES);
    t.equal(b?.options.version, 1, 'bucket updated to version 1');
    t.same(b?.reindexActive, { 1: ['server_uuid', 'image_uuid'] }, 'Moray reindexes the new fields');
    t.notOk(fake.state.buckets.has('sapi_history'), 'legacy sapi_history deleted');
    t.same([...(store.initializer?.pendingFields(INSTANCES) ?? [])].sort(), ['image_uuid', 'server_uuid'], 'new fields pending');
    t.equal(store.initializer?.isReady(INSTANCES), false, 'instances not ready');
    t.equal(await store.ping(), true, 'ping: usable during the reindex');

    // Before any row is reindexed, Moray's new index is empty.
    t.equal(await rawMatches(raw, `(server_uuid=${server})`), 0, 'Moray alone finds nothing yet');
    const storeFilters: string[] = [];
    const searches = async (when: string): Promise<void> => {
        const n = fake.requestsOf('findObjects').length;
        await checkSearches(t, store, l, when);
        storeFilters.push(
            ...fake
                .requestsOf('findObjects')
                .slice(n)
                .filter((r) => r.args[0] === INSTANCES)
                .map((r) => String(r.args[1])),
        );
    };
    await searches('before reindexing');

    // A row written now is indexed at once; the store finds it as well.
    const late = id();
    await store.put(INSTANCES, { uuid: late, service_uuid: id(), type: 'vm', server_uuid: server, image_uuid: id() });
    l.byServer.get(server)?.push(late);
    await searches('after a write');

    // One batch of 50 reindexed: Moray's index is partial now.
    release = await reindexOneBatch(fake, release);
    const partial = await rawMatches(raw, `(server_uuid=${server})`);
    t.ok(partial > 0 && partial < (l.byServer.get(server) as string[]).length, 'Moray alone gives a partial answer', {
        partial,
    });
    await searches('halfway');
    t.ok(storeFilters.length > 0, 'the store searched Moray');
    t.notOk(
        storeFilters.some((f) => /(server|image)_uuid=/.test(f)),
        'no server-side filter on a field being reindexed',
    );

    release();
    await store.initializer?.reindexDone();
    t.equal(staleRows(fake), 0, 'every row reindexed');
    t.same(b?.reindexActive, {}, 'Moray reindex state cleared');
    t.equal(store.initializer?.isReady(), true, 'all buckets ready');
    t.same([...(store.initializer?.pendingFields(INSTANCES) ?? [])], [], 'nothing pending');
    t.equal(await rawMatches(raw, `(server_uuid=${server})`), (l.byServer.get(server) as string[]).length, 'Moray index complete');

    const before = fake.requestsOf('findObjects').length;
    await checkSearches(t, store, l, 'after reindexing');
    const used = fake
        .requestsOf('findObjects')
        .slice(before)
        .map((r) => String(r.args[1]));
    t.ok(
        used.some((f) => f.includes(`server_uuid=${server}`)),
        'the new index is used once complete',
    );

    const progress = entries.filter((e) => e.msg === 'reindexing moray bucket: progress');
    t.ok(progress.length >= 4, 'progress logged per batch');
    t.ok(
        entries.some((e) => e.msg === 'reindexing moray bucket: done' && (e.fields as { bucket?: string }).bucket === INSTANCES),
        'completion logged',
    );
    t.ok(
        entries.some((e) => e.msg === 'deleted legacy moray bucket'),
        'legacy bucket deletion logged',
    );
    t.same(
        entries.filter((e) => e.level !== 'info').map((e) => e.msg),
        [],
        'no warnings or errors',
    );
});

t.test('a reindex interrupted by a restart resumes, and searches stay complete', async (t) => {
    const l = await legacyMoray(t);
    const { fake } = l;

    // The first SAPI updates the buckets, reindexes one batch and goes away.
    let release = fake.block('reindexObjects', onInstances);
    const first = new MorayStore({ connect: { host: fake.host, port: fake.port }, reindexBatchSize: 50 });
    t.teardown(() => first.close());
    await first.init();
    release = await reindexOneBatch(fake, release);
    await first.close();
    release();
    t.ok(staleRows(fake) > 0, 'reindex left unfinished');

    // The next one finds the bucket at version 1 with a reindex pending.
    const hold = fake.block('reindexObjects', onInstances);
    const second = new MorayStore({ connect: { host: fake.host, port: fake.port }, reindexBatchSize: 50 });
    t.teardown(() => second.close());
    await second.init();
    t.equal(fake.requestsOf('updateBucket').length, 4, 'no second update');
    t.same([...(second.initializer?.pendingFields(INSTANCES) ?? [])].sort(), ['image_uuid', 'server_uuid'], 'fields still pending after the restart');
    await checkSearches(t, second, l, 'after the restart');
    hold();
    await second.initializer?.reindexDone();
    t.equal(staleRows(fake), 0, 'reindex finished by the second SAPI');
    await checkSearches(t, second, l, 'after the resumed reindex');
});
