// The one conformance suite every Store backend passes (SQLite, Moray).
//
// Each subtest gets a fresh store from makeStore() and closes it. Tests never
// assume empty buckets: each scopes its objects by random index values, so
// the suite can also run against a shared, real Moray.

import { randomUUID } from 'node:crypto';

import type { Test } from 'tap';

import { ALL_BUCKETS, BUCKETS, type BucketName } from '../../lib/stor/buckets.js';
import { EtagConflictError, NotFoundError, StoreUnavailableError } from '../../lib/stor/errors.js';
import { ALL, and, eq, oneOf, type JsonObject, type Store, type Stored } from '../../lib/stor/store.js';

export interface StoreContractOptions {
    /** Index values may contain NUL (PostgreSQL text cannot; default true). */
    nulInIndexValues?: boolean;
}

const INSTANCES = BUCKETS.instances.name;
const SERVICES = BUCKETS.services.name;

const id = (): string => randomUUID();

/** Resolves to the error if `p` rejects with an instance of `cls`, else fails. */
async function rejectsWith<E extends Error>(t: Test, p: Promise<unknown>, cls: abstract new (...args: never[]) => E, what: string): Promise<E | null> {
    try {
        await p;
    } catch (err) {
        t.ok(err instanceof cls, `${what}: rejects with ${cls.name}`, { found: String(err) });
        return err instanceof cls ? err : null;
    }
    t.fail(`${what}: expected a ${cls.name} rejection, got success`);
    return null;
}

function uuids(items: Stored[]): string[] {
    return items.map((s) => s.value.uuid as string);
}

function sorted(xs: string[]): string[] {
    return [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function anInstance(over: JsonObject = {}): JsonObject {
    return {
        uuid: id(),
        service_uuid: id(),
        type: 'vm',
        server_uuid: id(),
        image_uuid: id(),
        params: { alias: 'x', ram: 1024, tags: ['a', 'b'], nested: { ok: true, none: null } },
        ...over,
    };
}

export function storeContract(t: Test, makeStore: () => Promise<Store>, opts: StoreContractOptions = {}): void {
    /** A fresh store for one subtest; removes what it wrote and closes it after. */
    async function setup(tt: Test): Promise<{
        store: Store;
        put: (bucket: BucketName, v: JsonObject) => Promise<Stored>;
        track: (bucket: BucketName, uuid: unknown) => void;
    }> {
        const store = await makeStore();
        const written: [BucketName, string][] = [];
        tt.teardown(async () => {
            for (const [bucket, uuid] of written) {
                await store.del(bucket, uuid).catch(() => undefined);
            }
            await store.close();
        });
        const track = (bucket: BucketName, uuid: unknown): void => {
            written.push([bucket, uuid as string]);
        };
        const put = async (bucket: BucketName, v: JsonObject): Promise<Stored> => {
            track(bucket, v.uuid);
            return store.put(bucket, v);
        };
        return { store, put, track };
    }

    t.test('init is idempotent and ping says ready', async (t) => {
        const { store } = await setup(t);
        await store.init();
        t.equal(await store.ping(), true, 'ping');
        t.type(store.name, 'string', 'has a name');
    });

    t.test('get, put and del round-trip values', async (t) => {
        const { store, put } = await setup(t);
        const v = anInstance({ unicode: 'é ü 日本 🚀', num: 1.5, flag: false, nothing: null, list: [1, 'two', { three: 3 }] });
        t.equal(await store.get(INSTANCES, v.uuid as string), null, 'absent before');

        const stored = await put(INSTANCES, v);
        t.same(stored.value, v, 'put returns the value');
        t.type(stored.etag, 'string', 'put returns an etag');
        t.ok(stored.etag.length > 0, 'etag is not empty');
        t.not(stored.value, v, 'returned value is a copy');

        (v.params as JsonObject).alias = 'changed after put';
        const got = await store.get(INSTANCES, v.uuid as string);
        t.ok(got, 'found');
        t.equal((got?.value.params as JsonObject).alias, 'x', 'stored value is not the caller object');
        t.equal(got?.etag, stored.etag, 'same etag as put returned');
        t.same(got?.value.list, [1, 'two', { three: 3 }], 'nested values kept');
        t.equal(got?.value.unicode, 'é ü 日本 🚀', 'unicode kept');
        t.equal(got?.value.nothing, null, 'null kept');

        const again = await store.put(INSTANCES, { ...v, type: 'agent' });
        t.not(again.etag, stored.etag, 'a different value has a different etag');
        t.equal((await store.get(INSTANCES, v.uuid as string))?.value.type, 'agent', 'unconditional overwrite');
        t.equal(await store.get(SERVICES, v.uuid as string), null, 'buckets are separate');

        await store.del(INSTANCES, v.uuid as string);
        t.equal(await store.get(INSTANCES, v.uuid as string), null, 'gone after del');
    });

    t.test('put without a string uuid rejects', async (t) => {
        const { store } = await setup(t);
        await rejectsWith(t, store.put(INSTANCES, { name: 'no uuid' }), TypeError, 'no uuid');
        await rejectsWith(t, store.put(INSTANCES, { uuid: 42 }), TypeError, 'numeric uuid');
    });

    t.test('conditional put', async (t) => {
        const { store, track } = await setup(t);
        const v = anInstance();
        const uuid = v.uuid as string;
        track(INSTANCES, uuid);

        await rejectsWith(t, store.put(INSTANCES, v, { etag: 'nope' }), EtagConflictError, 'etag on a missing object');
        t.equal(await store.get(INSTANCES, uuid), null, 'nothing written');

        const first = await store.put(INSTANCES, v, { etag: null });
        t.ok(first.etag, 'etag null creates a missing object');

        const e1 = await rejectsWith(t, store.put(INSTANCES, v, { etag: null }), EtagConflictError, 'etag null on an existing object');
        t.equal(e1?.bucket, INSTANCES, 'error names the bucket');
        t.equal(e1?.key, uuid, 'error names the key');

        const cur = await store.get(INSTANCES, uuid);
        const second = await store.put(INSTANCES, { ...v, type: 'agent' }, { etag: cur?.etag });
        t.equal(second.value.type, 'agent', 'matching etag writes');

        const e2 = await rejectsWith(t, store.put(INSTANCES, { ...v, type: 'lost update' }, { etag: first.etag }), EtagConflictError, 'stale etag');
        t.equal(e2?.key, uuid, 'error names the key');
        const now = await store.get(INSTANCES, uuid);
        t.equal(now?.value.type, 'agent', 'stale write did not land');
        t.equal(now?.etag, second.etag, 'etag unchanged');
    });

    t.test('del', async (t) => {
        const { store, put } = await setup(t);
        const missing = id();
        const e = await rejectsWith(t, store.del(INSTANCES, missing), NotFoundError, 'missing object');
        t.equal(e?.bucket, INSTANCES, 'error names the bucket');
        t.equal(e?.key, missing, 'error names the key');

        const s = await put(INSTANCES, anInstance());
        const uuid = s.value.uuid as string;
        await rejectsWith(t, store.del(INSTANCES, uuid, { etag: 'wrong' }), EtagConflictError, 'wrong etag');
        t.ok(await store.get(INSTANCES, uuid), 'still there after a conflicting del');
        await store.del(INSTANCES, uuid, { etag: s.etag });
        t.equal(await store.get(INSTANCES, uuid), null, 'deleted with the right etag');
        await rejectsWith(t, store.del(INSTANCES, uuid), NotFoundError, 'second del');
    });

    t.test('find by each index field of each bucket', async (t) => {
        const { store, put } = await setup(t);
        for (const def of ALL_BUCKETS) {
            const fields = Object.keys(def.index);
            const make = (over: JsonObject): JsonObject => {
                const v: JsonObject = { uuid: id(), name: `n-${id()}` };
                for (const f of fields) {
                    v[f] = f === 'uuid' ? v.uuid : id();
                }
                return { ...v, ...over };
            };
            for (const f of fields) {
                if (f === 'uuid') {
                    const a = await put(def.name, make({}));
                    const page = await store.find(def.name, eq('uuid', a.value.uuid as string));
                    t.same(uuids(page.items), [a.value.uuid], `${def.name}: find by uuid`);
                    t.equal(page.total, 1, `${def.name}: total by uuid`);
                    continue;
                }
                const want = id();
                const a = await put(def.name, make({ [f]: want }));
                await put(def.name, make({}));
                const b = await put(def.name, make({ [f]: want }));
                const page = await store.find(def.name, eq(f, want));
                t.same(uuids(page.items), [a.value.uuid, b.value.uuid], `${def.name}: find by ${f}`);
                t.equal(page.total, 2, `${def.name}: total by ${f}`);
                t.equal(await store.count(def.name, eq(f, want)), 2, `${def.name}: count by ${f}`);
                t.same(page.items[0]?.value, a.value, `${def.name}: found value is the stored value`);
                t.equal(page.items[0]?.etag, a.etag, `${def.name}: found etag is the stored etag`);
            }
        }
    });

    t.test('find with combined filters', async (t) => {
        const { store, put } = await setup(t);
        const svc = id();
        const [s1, s2] = [id(), id()];
        const img = id();
        const a = await put(INSTANCES, anInstance({ service_uuid: svc, type: 'vm', server_uuid: s1, image_uuid: img }));
        const b = await put(INSTANCES, anInstance({ service_uuid: svc, type: 'agent', server_uuid: s1 }));
        const c = await put(INSTANCES, anInstance({ service_uuid: svc, type: 'agent', server_uuid: s2, image_uuid: img }));
        await put(INSTANCES, anInstance({ type: 'agent', server_uuid: s1, image_uuid: img }));
        const u = (...xs: Stored[]): string[] => xs.map((x) => x.value.uuid as string);

        const q = async (f: Parameters<Store['find']>[1]): Promise<string[]> => uuids((await store.find(INSTANCES, f)).items);
        t.same(await q(and(eq('service_uuid', svc), eq('type', 'agent'))), u(b, c), 'service and type');
        t.same(await q(and(eq('service_uuid', svc), eq('server_uuid', s1))), u(a, b), 'service and server');
        t.same(await q(and(eq('service_uuid', svc), eq('type', 'agent'), eq('image_uuid', img))), u(c), 'three fields');
        t.same(await q(and(eq('service_uuid', svc), oneOf('server_uuid', [s1, s2]))), u(a, b, c), 'and with in');
        t.same(await q({ and: [eq('service_uuid', svc), { and: [eq('type', 'vm'), ALL] }] }), u(a), 'nested and with all');
        t.same(await q(and(eq('service_uuid', svc), eq('type', 'none'))), [], 'no match');
        t.equal(await store.count(INSTANCES, and(eq('service_uuid', svc), eq('type', 'agent'))), 2, 'count');
    });

    t.test('in filters', async (t) => {
        const { store, put } = await setup(t);
        const [x, y, z] = [id(), id(), id()];
        const a = await put(INSTANCES, anInstance({ service_uuid: x }));
        const b = await put(INSTANCES, anInstance({ service_uuid: y }));
        await put(INSTANCES, anInstance({ service_uuid: z }));
        const page = await store.find(INSTANCES, oneOf('service_uuid', [x, y]));
        t.same(uuids(page.items), uuids([a, b]), 'either value');
        t.equal(page.total, 2, 'total');
        t.same(uuids((await store.find(INSTANCES, oneOf('service_uuid', [y]))).items), uuids([b]), 'one value');
        t.same(uuids((await store.find(INSTANCES, oneOf('service_uuid', [x, x]))).items), uuids([a]), 'repeated value');
        const none = await store.find(INSTANCES, oneOf('service_uuid', []));
        t.same(none, { items: [], total: 0 }, 'no values: nothing');
        t.equal(await store.count(INSTANCES, oneOf('service_uuid', [])), 0, 'no values: count 0');
        const paged = await store.find(INSTANCES, oneOf('service_uuid', []), { limit: 10 });
        t.same(paged, { items: [], total: 0 }, 'no values, paged: nothing');
        const chunks: Stored[][] = [];
        for await (const c of store.iterate(INSTANCES, and(oneOf('service_uuid', []), eq('type', 'vm')))) {
            chunks.push(c);
        }
        t.same(chunks, [], 'no values: iterate yields nothing');
    });

    t.test('the all filter', async (t) => {
        const { store, put } = await setup(t);
        const before = await store.count(INSTANCES, ALL);
        const made = [await put(INSTANCES, anInstance()), await put(INSTANCES, anInstance()), await put(INSTANCES, anInstance())];
        t.equal(await store.count(INSTANCES, ALL), before + 3, 'count grows by 3');
        const all = await store.find(INSTANCES, ALL);
        t.equal(all.total, all.items.length, 'total is the number of items');
        const mine = uuids(all.items).filter((u) => uuids(made).includes(u));
        t.same(mine, uuids(made), 'ours are there, in creation order');
        t.equal((await store.find(INSTANCES, and())).total, all.total, 'and() is all');
        const page = await store.find(INSTANCES, ALL, { limit: 1 });
        t.equal(page.total, all.total, 'paged total counts everything');
        t.equal(page.items.length, 1, 'one item');
    });

    t.test('without a page, results come in creation order', async (t) => {
        const { store, put } = await setup(t);
        const svc = id();
        // Create in reverse uuid order, so creation order differs from uuid order.
        const ids = sorted([id(), id(), id(), id(), id(), id()]).reverse();
        for (const uuid of ids) {
            await put(INSTANCES, anInstance({ uuid, service_uuid: svc }));
        }
        const f = eq('service_uuid', svc);
        t.same(uuids((await store.find(INSTANCES, f)).items), ids, 'creation order');

        await store.put(INSTANCES, anInstance({ uuid: ids[0], service_uuid: svc, type: 'updated' }));
        t.same(uuids((await store.find(INSTANCES, f)).items), ids, 'an update keeps the position');

        await store.del(INSTANCES, ids[1] as string);
        await put(INSTANCES, anInstance({ uuid: ids[1] as string, service_uuid: svc }));
        const moved = [ids[0], ...ids.slice(2), ids[1]];
        t.same(uuids((await store.find(INSTANCES, f)).items), moved, 're-created object goes last');
    });

    t.test('paging by uuid with a marker and a total', async (t) => {
        const { store, put } = await setup(t);
        const svc = id();
        const ids: string[] = [];
        for (let i = 0; i < 7; i++) {
            ids.push((await put(INSTANCES, anInstance({ service_uuid: svc }))).value.uuid as string);
        }
        await put(INSTANCES, anInstance()); // another scope
        const order = sorted(ids);
        const f = eq('service_uuid', svc);

        const p1 = await store.find(INSTANCES, f, { limit: 3 });
        t.same(uuids(p1.items), order.slice(0, 3), 'first page');
        t.equal(p1.total, 7, 'first page total');
        const p2 = await store.find(INSTANCES, f, { limit: 3, marker: order[2] });
        t.same(uuids(p2.items), order.slice(3, 6), 'second page');
        t.equal(p2.total, 7, 'second page total');
        const p3 = await store.find(INSTANCES, f, { limit: 3, marker: order[5] });
        t.same(uuids(p3.items), order.slice(6), 'last page');
        t.equal(p3.total, 7, 'last page total');
        const p4 = await store.find(INSTANCES, f, { limit: 3, marker: order[6] });
        t.same(uuids(p4.items), [], 'past the end');
        t.equal(p4.total, 7, 'past the end total');

        const between = `${(order[3] as string).slice(0, -1)}`; // sorts just before order[3]
        const p5 = await store.find(INSTANCES, f, { limit: 2, marker: between });
        t.same(uuids(p5.items), order.slice(3, 5), 'a marker that is not a stored uuid');
        const p6 = await store.find(INSTANCES, f, { limit: 100, marker: undefined });
        t.same(uuids(p6.items), order, 'limit above total');
        const p7 = await store.find(INSTANCES, f, { limit: 0 });
        t.same(p7, { items: [], total: 7 }, 'limit 0: no items, total');

        const paged: string[] = [];
        let marker: string | undefined;
        for (;;) {
            const p = await store.find(INSTANCES, f, { limit: 2, marker });
            paged.push(...uuids(p.items));
            if (p.items.length < 2) {
                break;
            }
            marker = paged[paged.length - 1];
        }
        t.same(paged, order, 'walking every page gives each object once, in uuid order');
    });

    t.test('iterate in chunks, in creation order', async (t) => {
        const { store, put } = await setup(t);
        const svc = id();
        const made: string[] = [];
        for (let i = 0; i < 7; i++) {
            made.push((await put(INSTANCES, anInstance({ service_uuid: svc }))).value.uuid as string);
        }
        const collect = async (f: Parameters<Store['iterate']>[1], size?: number): Promise<string[][]> => {
            const out: string[][] = [];
            for await (const chunk of store.iterate(INSTANCES, f, size)) {
                out.push(uuids(chunk));
            }
            return out;
        };
        const f = eq('service_uuid', svc);
        t.same(await collect(f, 3), [made.slice(0, 3), made.slice(3, 6), made.slice(6)], 'chunks of 3');
        t.same(await collect(f), [made], 'default chunk size');
        t.same(await collect(and(f, oneOf('uuid', made.slice(0, 6))), 3), [made.slice(0, 3), made.slice(3, 6)], 'exact multiple');
        t.same(await collect(eq('service_uuid', id()), 3), [], 'no match: no chunks');
        const chunkOf = await store.iterate(INSTANCES, f, 7)[Symbol.asyncIterator]().next();
        t.same(
            (chunkOf.value as Stored[] | undefined)?.map((s) => s.value.service_uuid),
            Array(7).fill(svc),
            'chunks hold stored values',
        );
    });

    t.test('batch applies every operation', async (t) => {
        const { store, put, track } = await setup(t);
        const keep = await put(INSTANCES, anInstance());
        const gone = await put(INSTANCES, anInstance());
        const fresh = anInstance();
        const svc = { uuid: id(), name: 'svc', application_uuid: id(), type: 'agent' };
        track(INSTANCES, fresh.uuid);
        track(SERVICES, svc.uuid);
        await store.batch([
            { op: 'put', bucket: INSTANCES, value: fresh, etag: null },
            { op: 'put', bucket: INSTANCES, value: { ...keep.value, type: 'agent' }, etag: keep.etag },
            { op: 'del', bucket: INSTANCES, uuid: gone.value.uuid as string, etag: gone.etag },
            { op: 'put', bucket: SERVICES, value: svc },
        ]);
        t.ok(await store.get(INSTANCES, fresh.uuid as string), 'new object written');
        t.equal((await store.get(INSTANCES, keep.value.uuid as string))?.value.type, 'agent', 'update written');
        t.equal(await store.get(INSTANCES, gone.value.uuid as string), null, 'delete applied');
        t.same((await store.get(SERVICES, svc.uuid))?.value, svc, 'other bucket written');
        await store.batch([]);
        t.pass('an empty batch is fine');
    });

    t.test('a failing batch leaves nothing written', async (t) => {
        const { store, put, track } = await setup(t);
        const existing = await put(INSTANCES, anInstance());
        const victim = await put(INSTANCES, anInstance());
        const a = anInstance();
        const b = anInstance();
        track(INSTANCES, a.uuid);
        track(INSTANCES, b.uuid);

        await rejectsWith(
            t,
            store.batch([
                { op: 'put', bucket: INSTANCES, value: a },
                { op: 'del', bucket: INSTANCES, uuid: victim.value.uuid as string },
                { op: 'put', bucket: INSTANCES, value: b },
                { op: 'del', bucket: INSTANCES, uuid: id() },
            ]),
            NotFoundError,
            'del of a missing object',
        );
        t.equal(await store.get(INSTANCES, a.uuid as string), null, 'first put rolled back');
        t.equal(await store.get(INSTANCES, b.uuid as string), null, 'second put rolled back');
        t.ok(await store.get(INSTANCES, victim.value.uuid as string), 'del rolled back');

        await rejectsWith(
            t,
            store.batch([
                { op: 'put', bucket: INSTANCES, value: a },
                { op: 'put', bucket: INSTANCES, value: { ...existing.value, type: 'x' }, etag: 'stale' },
            ]),
            EtagConflictError,
            'stale etag',
        );
        t.equal(await store.get(INSTANCES, a.uuid as string), null, 'put before the conflict rolled back');
        t.same((await store.get(INSTANCES, existing.value.uuid as string))?.etag, existing.etag, 'conflicting object unchanged');

        await rejectsWith(
            t,
            store.batch([
                { op: 'del', bucket: INSTANCES, uuid: victim.value.uuid as string },
                { op: 'put', bucket: INSTANCES, value: existing.value, etag: null },
            ]),
            EtagConflictError,
            'etag null on an existing object',
        );
        t.ok(await store.get(INSTANCES, victim.value.uuid as string), 'del before the conflict rolled back');
    });

    t.test('meta settings', async (t) => {
        const { store } = await setup(t);
        const key = `test-${id()}`;
        t.equal(await store.getMeta(key), null, 'absent');
        await store.setMeta(key, 'one');
        t.equal(await store.getMeta(key), 'one', 'set');
        await store.setMeta(key, 'two {"json": true}');
        t.equal(await store.getMeta(key), 'two {"json": true}', 'overwritten');
    });

    t.test('filter values with LDAP special characters match literally', async (t) => {
        const { store, put } = await setup(t);
        const svc = id();
        const values = ['*', 'a*', 'a', 'abc', 'a(b)c', '(', ')', 'back\\slash', '\\2a', 'x)(uuid=*', '*)(|(type=*', 'é 日本'];
        if (opts.nulInIndexValues !== false) {
            values.push('nul\u0000byte', 'nul');
        }
        const byType = new Map<string, string>();
        for (const v of values) {
            byType.set(v, (await put(INSTANCES, anInstance({ service_uuid: svc, type: v }))).value.uuid as string);
        }
        for (const v of values) {
            const page = await store.find(INSTANCES, and(eq('service_uuid', svc), eq('type', v)));
            t.same(uuids(page.items), [byType.get(v)], `type=${JSON.stringify(v)} finds exactly its object`);
        }
        const star = await store.find(INSTANCES, and(eq('service_uuid', svc), oneOf('type', ['*', 'a(b)c'])));
        t.same(sorted(uuids(star.items)), sorted([byType.get('*'), byType.get('a(b)c')] as string[]), 'in with special characters');
        t.equal(await store.count(INSTANCES, and(eq('service_uuid', svc), eq('type', '*'))), 1, 'count of * is 1');
        t.same(uuids((await store.find(INSTANCES, eq('type', '*)(|(type=*'))).items), [byType.get('*)(|(type=*')], 'no filter injection');
        const paged = await store.find(INSTANCES, and(eq('service_uuid', svc), eq('type', 'a*')), { limit: 5, marker: '' });
        t.same(uuids(paged.items), [byType.get('a*')], 'paged');
        t.equal(paged.total, 1, 'paged total');
        t.same((await store.find(INSTANCES, eq('service_uuid', '*'))).items, [], 'a * value is no wildcard');
    });

    t.test('filters on fields that are not indexed are rejected', async (t) => {
        const { store } = await setup(t);
        await rejectsWith(t, store.find(INSTANCES, eq('not_an_index', 'x')), Error, 'find');
        await rejectsWith(t, store.count(INSTANCES, oneOf('not_an_index', ['x'])), Error, 'count');
        const it = store.iterate(INSTANCES, and(eq('type', 'vm'), eq('not_an_index', 'x')))[Symbol.asyncIterator]();
        await rejectsWith(t, it.next(), Error, 'iterate');
    });

    t.test('after close, operations reject with StoreUnavailableError', async (t) => {
        const store = await makeStore();
        await store.close();
        t.equal(await store.ping(), false, 'ping says not ready');
        const u = id();
        await rejectsWith(t, store.get(INSTANCES, u), StoreUnavailableError, 'get');
        await rejectsWith(t, store.put(INSTANCES, anInstance()), StoreUnavailableError, 'put');
        await rejectsWith(t, store.del(INSTANCES, u), StoreUnavailableError, 'del');
        await rejectsWith(t, store.find(INSTANCES, ALL), StoreUnavailableError, 'find');
        await rejectsWith(t, store.count(INSTANCES, ALL), StoreUnavailableError, 'count');
        await rejectsWith(t, store.iterate(INSTANCES, ALL)[Symbol.asyncIterator]().next(), StoreUnavailableError, 'iterate');
        await rejectsWith(t, store.batch([{ op: 'del', bucket: INSTANCES, uuid: u }]), StoreUnavailableError, 'batch');
        await rejectsWith(t, store.getMeta('k'), StoreUnavailableError, 'getMeta');
        await rejectsWith(t, store.setMeta('k', 'v'), StoreUnavailableError, 'setMeta');
        await store.close();
        t.pass('close twice is fine');
    });
}
