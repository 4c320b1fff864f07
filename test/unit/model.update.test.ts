// Update actions on the inheritable maps (lib/model/update.ts): update,
// replace and delete on params/metadata/manifests, validation before any
// write, and etags (If-Match, concurrent writers), on an in-memory store.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { updateApplication } from '../../lib/model/applications.js';
import type { Ctx } from '../../lib/model/context.js';
import { createInstance, updateInstance } from '../../lib/model/instances.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import { updateService } from '../../lib/model/services.js';
import type { Dict, Instance, Kind } from '../../lib/model/types.js';
import { applyToMap, applyUpdate, parseAction, validatedShape, withoutFalsy } from '../../lib/model/update.js';
import type { Stored } from '../../lib/stor/store.js';
import { aManifest, anApplication, aService, isSapiError, modelCtx, rejection, reqInfo } from '../lib/model-ctx.js';

// ---- the pure parts

t.test('parseAction: absent, null or "" is update; case-insensitive; anything else is 409 InvalidArgument', async (t) => {
    t.equal(parseAction(undefined), 'update');
    t.equal(parseAction(null), 'update');
    t.equal(parseAction(''), 'update');
    t.equal(parseAction('update'), 'update');
    t.equal(parseAction('REPLACE'), 'replace');
    t.equal(parseAction('Delete'), 'delete');
    isSapiError(t, await rejection(Promise.resolve().then(() => parseAction('merge'))), 409, 'InvalidArgument', 'invalid action: merge');
    isSapiError(t, await rejection(Promise.resolve().then(() => parseAction(5))), 409, 'InvalidArgument', 'invalid action: 5');
    isSapiError(t, await rejection(Promise.resolve().then(() => parseAction(['update']))), 409, 'InvalidArgument', 'invalid action: ["update"]');
});

t.test('applyToMap: update merges key-wise (shallow), replace swaps, delete drops the named keys whatever their value', async (t) => {
    const stored = { a: 1, b: { x: 1 }, c: 3 };
    t.strictSame(applyToMap('update', stored, { b: { y: 2 }, d: 4 }), { a: 1, b: { y: 2 }, c: 3, d: 4 });
    t.strictSame(applyToMap('replace', stored, { z: 26 }), { z: 26 });
    t.strictSame(applyToMap('delete', stored, { a: 'anything', b: null, nope: 1 }), { c: 3 });
    t.strictSame(applyToMap('update', undefined, { a: 1 }), { a: 1 }, 'nothing stored yet');
    t.strictSame(applyToMap('delete', undefined, { a: 1 }), {});
    t.strictSame(applyToMap('replace', stored, {}), {}, 'replace with {} empties the map');
    t.strictSame(stored, { a: 1, b: { x: 1 }, c: 3 }, 'the stored map is not modified');
});

t.test('applyUpdate: only the listed fields, only truthy changes, objects only; the input is not modified', async (t) => {
    const obj = { uuid: 'u', name: 'n', params: { a: 1 }, metadata: { M: 1 } };
    const out = applyUpdate(obj, 'update', { params: { b: 2 }, metadata: undefined, name: 'other' }, ['params', 'metadata']);
    t.strictSame(out, { uuid: 'u', name: 'n', params: { a: 1, b: 2 }, metadata: { M: 1 } }, 'name is not an updatable field');
    t.strictSame(obj, { uuid: 'u', name: 'n', params: { a: 1 }, metadata: { M: 1 } });
    t.strictSame(applyUpdate(obj, 'replace', { params: {}, metadata: null }, ['params', 'metadata']).params, {}, '{} is truthy: replaced');
    t.strictSame(applyUpdate({ uuid: 'u' }, 'update', { manifests: { a: 'm' } }, ['manifests']), { uuid: 'u', manifests: { a: 'm' } });
    t.strictSame(
        applyUpdate({ uuid: 'u', params: 'corrupt' }, 'update', { params: { a: 1 } }, ['params']),
        { uuid: 'u', params: { a: 1 } },
        'a stored non-object is treated as absent',
    );
    isSapiError(
        t,
        await rejection(Promise.resolve().then(() => applyUpdate(obj, 'update', { params: [1] }, ['params']))),
        409,
        'InvalidArgument',
        'params must be object',
    );
});

t.test('validatedShape and withoutFalsy: delete checks only keys; falsy fields are left out', async (t) => {
    const body = { action: 'delete', params: { a: 5 }, metadata: { B: [1] }, manifests: 'x' };
    t.strictSame(validatedShape('delete', body), { action: 'delete', params: {}, metadata: {}, manifests: 'x' }, 'non-objects are still validated');
    t.equal(validatedShape('update', body), body, 'other actions validate the body as sent');
    t.strictSame(withoutFalsy({ a: 0, b: '', c: null, d: undefined, e: false, f: {}, g: 'x' }), { f: {}, g: 'x' });
});

// ---- through the store

type Updater = (ctx: Ctx, uuid: string, params: Dict, ifMatch?: string[]) => Promise<Stored<Dict & { uuid: string }>>;

interface Subject {
    kind: Kind;
    update: Updater;
    /** Create one object with these maps; its uuid. */
    make: (ctx: Ctx, maps: Dict) => Promise<string>;
}

const SUBJECTS: Subject[] = [
    {
        kind: 'application',
        update: updateApplication,
        make: async (ctx, maps) => (await anApplication(ctx, maps)).uuid,
    },
    {
        kind: 'service',
        update: updateService,
        make: async (ctx, maps) => (await aService(ctx, (await anApplication(ctx)).uuid, maps)).uuid,
    },
    {
        kind: 'instance',
        update: updateInstance,
        make: async (ctx, maps) => {
            const svc = await aService(ctx, (await anApplication(ctx)).uuid);
            return (await createInstance(ctx, reqInfo(), { service_uuid: svc.uuid, ...maps })).instance.uuid;
        },
    },
];

async function stored(ctx: Ctx, kind: Kind, uuid: string): Promise<Stored<Dict>> {
    const got = await ctx.store.get<Dict>(BUCKET_OF[kind], uuid);
    if (!got) {
        throw new Error(`${kind} ${uuid} is gone`);
    }
    return got;
}

for (const { kind, update, make } of SUBJECTS) {
    t.test(`${kind}: update (the default), replace and delete on params, metadata and manifests`, async (t) => {
        const ctx = await modelCtx(t);
        const m1 = await aManifest(ctx);
        const m2 = await aManifest(ctx);
        const uuid = await make(ctx, { params: { p1: 1, p2: 2 }, metadata: { M1: 'a', M2: { deep: 1 } }, manifests: { one: m1.uuid } });

        const r1 = await update(ctx, uuid, { params: { p2: 'two', p3: 3 }, metadata: { M2: { other: 1 } }, manifests: { two: m2.uuid } });
        t.strictSame(r1.value.params, { p1: 1, p2: 'two', p3: 3 });
        t.strictSame(r1.value.metadata, { M1: 'a', M2: { other: 1 } }, 'nested objects are replaced, not merged');
        t.strictSame(r1.value.manifests, { one: m1.uuid, two: m2.uuid });
        t.strictSame((await stored(ctx, kind, uuid)).value, r1.value, 'what is returned is what is stored');

        const r2 = await update(ctx, uuid, { action: 'replace', metadata: { ONLY: true } });
        t.strictSame(r2.value.metadata, { ONLY: true });
        t.strictSame(r2.value.params, { p1: 1, p2: 'two', p3: 3 }, 'maps not given are left alone');
        t.strictSame(r2.value.manifests, { one: m1.uuid, two: m2.uuid });

        const r3 = await update(ctx, uuid, { action: 'delete', params: { p1: 'ignored', nope: null }, manifests: { one: 'not-a-uuid-nor-a-manifest' } });
        t.strictSame(r3.value.params, { p2: 'two', p3: 3 });
        t.strictSame(r3.value.manifests, { two: m2.uuid }, 'delete does not check the values as manifest references');
        t.strictSame(r3.value.metadata, { ONLY: true });

        const r4 = await update(ctx, uuid, { action: '', params: null, metadata: '', manifests: 0 });
        t.strictSame(r4.value, r3.value, 'falsy maps are left alone, an empty action is update');
        t.equal(r4.etag, r3.etag, 'an update that changes nothing keeps the etag');
    });

    t.test(`${kind}: a bad update is refused before anything is written`, async (t) => {
        const ctx = await modelCtx(t);
        const uuid = await make(ctx, { params: { keep: 1 } });
        const before = await stored(ctx, kind, uuid);

        isSapiError(t, await rejection(update(ctx, uuid, { params: 'x' })), 409, 'InvalidArgument', 'params must be object');
        isSapiError(t, await rejection(update(ctx, uuid, { action: 'merge', params: { a: 1 } })), 409, 'InvalidArgument', 'invalid action: merge');
        isSapiError(t, await rejection(update(ctx, uuid, { manifests: { a: 5 } })), 409, 'InvalidArgument', 'manifests.a must be string');
        const ghost = randomUUID();
        isSapiError(t, await rejection(update(ctx, uuid, { manifests: { a: ghost } })), 404, 'ResourceNotFound', `no such manifest: ${ghost}`);
        isSapiError(t, await rejection(update(ctx, uuid, { action: 'delete', params: 'x' })), 409, 'InvalidArgument', 'params must be object');
        t.strictSame(await stored(ctx, kind, uuid), before, 'unchanged, same etag');

        const missing = randomUUID();
        isSapiError(t, await rejection(update(ctx, missing, { params: { a: 1 } })), 404, 'ResourceNotFound', `no such ${kind}: ${missing}`);
    });

    t.test(`${kind}: etags follow the content; If-Match is one conditional attempt`, async (t) => {
        const ctx = await modelCtx(t);
        const uuid = await make(ctx, { params: { n: 0 } });
        const e0 = (await stored(ctx, kind, uuid)).etag;

        const r1 = await update(ctx, uuid, { params: { n: 1 } }, [e0]);
        t.not(r1.etag, e0, 'a change gives a new etag');
        t.equal((await stored(ctx, kind, uuid)).etag, r1.etag, 'the returned etag is the stored one');

        isSapiError(
            t,
            await rejection(update(ctx, uuid, { params: { n: 2 } }, [e0])),
            412,
            'PreconditionFailed',
            `${kind} ${uuid} does not match If-Match (current etag "${r1.etag}")`,
        );
        t.strictSame((await stored(ctx, kind, uuid)).value.params, { n: 1 }, 'a stale etag writes nothing');

        const r2 = await update(ctx, uuid, { params: { n: 2 } }, ['bogus', r1.etag]);
        t.strictSame(r2.value.params, { n: 2 }, 'any listed etag matches');
        const r3 = await update(ctx, uuid, { params: { n: 3 } }, ['*']);
        t.strictSame(r3.value.params, { n: 3 }, '* matches any etag');
        const back = await update(ctx, uuid, { params: { n: 0 } });
        t.equal(back.etag, e0, 'the same content has the same etag');
    });

    t.test(`${kind}: concurrent updates all land; with If-Match the loser gets 412`, async (t) => {
        const ctx = await modelCtx(t);
        const uuid = await make(ctx, {});
        await Promise.all(Array.from({ length: 8 }, (_, i) => update(ctx, uuid, { metadata: { [`K${i}`]: i } })));
        t.strictSame(
            (await stored(ctx, kind, uuid)).value.metadata,
            Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`K${i}`, i])),
            'every read-modify-write was retried until it applied on top of the others',
        );

        const etag = (await stored(ctx, kind, uuid)).etag;
        const results = await Promise.allSettled([update(ctx, uuid, { metadata: { A: 1 } }, [etag]), update(ctx, uuid, { metadata: { B: 1 } }, [etag])]);
        t.strictSame(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'exactly one conditional writer wins');
        const lost = results.find((r) => r.status === 'rejected');
        isSapiError(t, lost?.reason, 412, 'PreconditionFailed', `${kind} ${uuid} was changed by another request`);
    });
}

t.test('instance: the top-level index copies follow params.server_uuid and params.image_uuid', async (t) => {
    const ctx = await modelCtx(t);
    const svc = await aService(ctx, (await anApplication(ctx)).uuid);
    const server = randomUUID();
    const image = randomUUID();
    const inst = (await createInstance(ctx, reqInfo(), { service_uuid: svc.uuid })).instance;
    t.notOk('server_uuid' in inst);

    const r1 = await updateInstance(ctx, inst.uuid, { params: { server_uuid: server, image_uuid: image } });
    t.equal(r1.value.server_uuid, server);
    t.equal(r1.value.image_uuid, image);
    t.strictSame(
        (await ctx.store.find<Instance>(BUCKET_OF.instance, { eq: { field: 'server_uuid', value: server } })).items.map((s) => s.value.uuid),
        [inst.uuid],
        'searchable by server',
    );

    const r2 = await updateInstance(ctx, inst.uuid, { action: 'delete', params: { server_uuid: true } });
    t.notOk('server_uuid' in r2.value, 'the copy goes with the param');
    t.equal(r2.value.image_uuid, image);

    isSapiError(
        t,
        await rejection(updateInstance(ctx, inst.uuid, { params: { image_uuid: 'nope' } })),
        409,
        'InvalidArgument',
        'params.image_uuid must be a UUID',
    );
});

t.test('application: owner_uuid can change; metadata must keep satisfying metadata_schema', async (t) => {
    const ctx = await modelCtx(t);
    const app = await anApplication(ctx, {
        metadata: { PORT: 80 },
        metadata_schema: { type: 'object', properties: { PORT: { type: 'number' } } },
    });
    const owner = randomUUID();
    const r1 = await updateApplication(ctx, app.uuid, { owner_uuid: owner });
    t.equal(r1.value.owner_uuid, owner);

    isSapiError(
        t,
        await rejection(updateApplication(ctx, app.uuid, { metadata: { PORT: 'eighty' } })),
        409,
        'SchemaValidationError',
        /^property "PORT": string value found/,
    );
    t.strictSame((await stored(ctx, 'application', app.uuid)).value.metadata, { PORT: 80 }, 'nothing written');

    isSapiError(
        t,
        await rejection(updateApplication(ctx, app.uuid, { metadata_schema: { type: 'object', properties: { PORT: { type: 'string' } } } })),
        409,
        'SchemaValidationError',
        /^property "PORT"/,
    );
    const r2 = await updateApplication(ctx, app.uuid, { action: 'delete', metadata_schema: { properties: 1 } });
    t.strictSame(r2.value.metadata_schema, { type: 'object' }, 'metadata_schema takes the actions too');
});
