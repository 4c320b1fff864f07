// GetConfig's cache (lib/model/config-cache.ts) on an in-memory store:
// assemblies overtaken by writes, shared assemblies, the entry and JSON
// bounds, the bound on a store other processes write, and failures.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { ConfigCache, SHARED_STORE_REVALIDATE_MS } from '../../lib/model/config-cache.js';
import { buildConfig, configEtag } from '../../lib/model/config-doc.js';
import type { Ctx } from '../../lib/model/context.js';
import { createInstance, updateInstance } from '../../lib/model/instances.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import { updateService } from '../../lib/model/services.js';
import type { Dict } from '../../lib/model/types.js';
import type { BucketName } from '../../lib/stor/buckets.js';
import { ForwardingStore } from '../../lib/stor/forwarding.js';
import type { JsonObject, Store, Stored } from '../../lib/stor/store.js';
import { aManifest, anApplication, aService, isSapiError, modelCtx, rejection, reqInfo } from '../lib/model-ctx.js';

/** A store whose gets of one bucket can be held, and which counts gets per bucket. */
class GatedStore extends ForwardingStore {
    readonly gets = new Map<string, number>();
    private held: { bucket: string; arrived: () => void; release: Promise<void> } | null = null;

    constructor(private readonly real: Store) {
        super();
    }

    get inner(): Store {
        return this.real;
    }

    /** Hold the next gets of `bucket`; resolves once one has arrived, with the release. */
    hold(bucket: BucketName): { arrived: Promise<void>; release: () => void } {
        let release!: () => void;
        let arrived!: () => void;
        const arrival = new Promise<void>((r) => (arrived = r));
        this.held = { bucket, arrived, release: new Promise<void>((r) => (release = r)) };
        return {
            arrived: arrival,
            release: () => {
                this.held = null;
                release();
            },
        };
    }

    override async get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        this.gets.set(bucket, (this.gets.get(bucket) ?? 0) + 1);
        const h = this.held;
        if (h && h.bucket === bucket) {
            h.arrived();
            await h.release;
        }
        return super.get<T>(bucket, uuid);
    }
}

interface World {
    ctx: Ctx;
    cache: ConfigCache;
    gated: GatedStore;
    /** The store without the cache's watch: writes other processes would make. */
    raw: Store;
    svc: string;
    inst: (metadata?: Dict) => Promise<string>;
    fresh: (uuid: string) => Promise<string>;
}

async function world(t: Parameters<typeof modelCtx>[0], opts: Partial<ConstructorParameters<typeof ConfigCache>[0]> = {}): Promise<World> {
    const base = await modelCtx(t);
    const cache = new ConfigCache({ shared: false, ...opts });
    const gated = new GatedStore(base.store);
    const ctx: Ctx = { ...base, store: cache.watch(gated), configs: cache };
    const m = await aManifest(ctx);
    const app = await anApplication(ctx, { metadata: { A: 1 }, manifests: { m: m.uuid } });
    const svc = (await aService(ctx, app.uuid, { metadata: { S: 1 } })).uuid;
    return {
        ctx,
        cache,
        gated,
        raw: base.store,
        svc,
        inst: async (metadata = {}) => (await createInstance(ctx, reqInfo(), { service_uuid: svc, metadata })).instance.uuid,
        fresh: async (uuid) => configEtag(await buildConfig(base, uuid)),
    };
}

t.test('an assembly overtaken by a write to its instance answers its request but is not kept', async (t) => {
    const w = await world(t);
    const uuid = await w.inst({ I: 1 });
    const before = await w.fresh(uuid);
    const gate = w.gated.hold(BUCKET_OF.service);
    const pending = w.cache.get(w.ctx, uuid, false);
    await gate.arrived; // the instance has been read
    await updateInstance(w.ctx, uuid, { metadata: { I: 2 } });
    gate.release();
    t.equal((await pending).etag, before, 'the request, begun before the write, gets what it read');
    t.equal(w.cache.lookup(uuid, false), null, 'but it is not kept');
    const now = await w.cache.get(w.ctx, uuid, false);
    t.equal(now.etag, await w.fresh(uuid), 'the next request assembles the new document');
    t.not(now.etag, before);
});

t.test('an assembly overtaken by a write to its service is not kept either', async (t) => {
    const w = await world(t);
    const uuid = await w.inst();
    const before = await w.fresh(uuid);
    const gate = w.gated.hold(BUCKET_OF.application);
    const pending = w.cache.get(w.ctx, uuid, false);
    await gate.arrived; // the service has been read
    await updateService(w.ctx, w.svc, { metadata: { S: 2 } });
    gate.release();
    t.equal((await pending).etag, before);
    t.equal(w.cache.lookup(uuid, false), null, 'not kept');
    t.equal((await w.cache.get(w.ctx, uuid, false)).etag, await w.fresh(uuid));
});

t.test('requests at once share an assembly, unless a write came between', async (t) => {
    const w = await world(t);
    const uuid = await w.inst();
    const reads = (): number => w.gated.gets.get(BUCKET_OF.instance) ?? 0;
    const start = reads();
    let gate = w.gated.hold(BUCKET_OF.instance);
    const a = w.cache.get(w.ctx, uuid, false);
    const b = w.cache.get(w.ctx, uuid, true);
    await gate.arrived;
    gate.release();
    const [ra, rb] = await Promise.all([a, b]);
    t.equal(ra.etag, rb.etag);
    t.ok(rb.body, 'an assembled answer carries its JSON');
    t.equal(reads() - start, 1, 'one assembly for both');

    w.cache.noteWrite(BUCKET_OF.instance, uuid);
    gate = w.gated.hold(BUCKET_OF.instance);
    const c = w.cache.get(w.ctx, uuid, false);
    await gate.arrived;
    await aManifest(w.ctx); // a write: a later request must not take c's answer
    const d = w.cache.get(w.ctx, uuid, false);
    gate.release();
    await Promise.all([c, d]);
    t.equal(reads() - start, 3, 'the request after the write assembled on its own');
});

t.test('at most maxEntries entries, the least recently used dropped first', async (t) => {
    const w = await world(t, { maxEntries: 2 });
    const [a, b, c] = [await w.inst(), await w.inst(), await w.inst()];
    await w.cache.get(w.ctx, a, false);
    await w.cache.get(w.ctx, b, false);
    t.ok(w.cache.lookup(a, false), 'a used again: b is now the least recent');
    await w.cache.get(w.ctx, c, false);
    t.equal(w.cache.size, 2);
    t.equal(w.cache.lookup(b, false), null, 'b dropped');
    t.ok(w.cache.lookup(a, false) && w.cache.lookup(c, false), 'a and c kept');
});

t.test('JSON is kept within maxBodyBytes; an entry without it still answers for its tag', async (t) => {
    const probe = await world(t);
    const one = await probe.inst();
    const size = (await probe.cache.get(probe.ctx, one, true)).body?.length ?? 0;
    t.ok(size > 0);

    const w = await world(t, { maxBodyBytes: size + size / 2 });
    const [a, b] = [await w.inst(), await w.inst()];
    const got = await w.cache.get(w.ctx, a, false);
    t.ok(w.cache.lookup(a, true), "a's JSON kept");
    await w.cache.get(w.ctx, b, false);
    t.equal(w.cache.lookup(a, true), null, "b's JSON pushed a's out");
    t.equal(w.cache.lookup(a, false)?.etag, got.etag, 'a still answers with its tag (a 304)');
    const reads = w.gated.gets.get(BUCKET_OF.instance) ?? 0;
    const again = await w.cache.get(w.ctx, a, true);
    t.equal(again.body?.toString(), got.body?.toString(), 'a 200 assembles the same JSON again');
    t.equal((w.gated.gets.get(BUCKET_OF.instance) ?? 0) - reads, 1);

    const tiny = await world(t, { maxBodyBytes: 10 });
    const x = await tiny.inst();
    t.ok((await tiny.cache.get(tiny.ctx, x, true)).body, 'a body over the budget is still answered');
    t.equal(tiny.cache.lookup(x, true), null, 'but not kept');
    t.ok(tiny.cache.lookup(x, false), 'its tag is');
});

t.test('shared store: an entry answers for at most the bound; the embedded store has none', async (t) => {
    let clock = 0;
    const w = await world(t, { shared: true, now: () => clock });
    const uuid = await w.inst({ I: 1 });
    const before = (await w.cache.get(w.ctx, uuid, false)).etag;
    // Another process's write: this process does not see it.
    const cur = (await w.raw.get<JsonObject>(BUCKET_OF.instance, uuid))?.value as JsonObject;
    await w.raw.put(BUCKET_OF.instance, { ...cur, metadata: { I: 2 } });
    clock += SHARED_STORE_REVALIDATE_MS - 1;
    t.equal(w.cache.lookup(uuid, false)?.etag, before, 'within the bound: the kept tag');
    clock += 1;
    t.equal(w.cache.lookup(uuid, false), null, 'at the bound: no longer answered from');
    const after = (await w.cache.get(w.ctx, uuid, false)).etag;
    t.not(after, before);
    t.equal(after, await w.fresh(uuid));

    clock = 0;
    const local = await world(t, { shared: false, now: () => clock });
    const u2 = await local.inst();
    await local.cache.get(local.ctx, u2, false);
    clock += 24 * 3600 * 1000;
    t.ok(local.cache.lookup(u2, false), 'the embedded store: only writes make an entry stale');
});

t.test('a failed assembly drops the entry it was to replace and is not kept', async (t) => {
    let clock = 0;
    const w = await world(t, { shared: true, now: () => clock });
    const uuid = await w.inst();
    await w.cache.get(w.ctx, uuid, false);
    await w.raw.del(BUCKET_OF.instance, uuid); // another process deleted it
    clock += SHARED_STORE_REVALIDATE_MS;
    isSapiError(t, await rejection(w.cache.get(w.ctx, uuid, false)), 404, 'ResourceNotFound', `no such instance: ${uuid}`);
    t.equal(w.cache.size, 0);
});

t.test('writes through the watched store: put, del and batch, any outcome', async (t) => {
    const w = await world(t);
    const [a, b] = [await w.inst(), await w.inst()];
    await w.cache.get(w.ctx, a, false);
    await w.cache.get(w.ctx, b, false);
    await w.ctx.store.batch([
        { op: 'del', bucket: BUCKET_OF.instance, uuid: a },
        { op: 'put', bucket: 'sapi_rollouts', value: { uuid: randomUUID() } },
    ]);
    t.equal(w.cache.lookup(a, false), null, 'a batch: its instance dropped');
    t.ok(w.cache.lookup(b, false), 'the other kept');
    await rejection(w.ctx.store.put(BUCKET_OF.instance, { uuid: b }, { etag: 'not-the-etag' }));
    t.equal(w.cache.lookup(b, false), null, 'a failed write drops the entry too (its outcome may be unknown)');
});

t.test('past the limit of recorded writes, the cache starts afresh', async (t) => {
    const w = await world(t);
    const uuid = await w.inst();
    await w.cache.get(w.ctx, uuid, false);
    for (let i = 0; i <= 100_000; i++) {
        w.cache.noteWrite(BUCKET_OF.manifest, `m-${i}`);
    }
    t.equal(w.cache.size, 0, 'emptied');
    await w.cache.get(w.ctx, uuid, false);
    t.ok(w.cache.lookup(uuid, false), 'and filled again');
});
