// The attribute merge (application → service → instance) and the config
// document built from it, on an in-memory store: lib/model/attributes.ts
// and lib/model/config-doc.ts.

import { createHash, randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import { copyInto, isPlainObject, mergeAttributes, mergeMaps } from '../../lib/model/attributes.js';
import { buildConfig, configEtag, loadParents } from '../../lib/model/config-doc.js';
import type { Ctx } from '../../lib/model/context.js';
import { createInstance } from '../../lib/model/instances.js';
import type { Application, Dict, Instance, Service } from '../../lib/model/types.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import { aManifest, anApplication, aService, isSapiError, modelCtx, rejection, reqInfo } from '../lib/model-ctx.js';

const sha1 = (s: string): string => createHash('sha1').update(s, 'utf8').digest('hex');

async function aVmInstance(ctx: Ctx, serviceUuid: string, extra: Dict = {}): Promise<Instance> {
    return (await createInstance(ctx, reqInfo(), { service_uuid: serviceUuid, ...extra })).instance;
}

function isNotFound(t: Test, err: unknown, message: string): void {
    isSapiError(t, err, 404, 'ResourceNotFound', message);
}

t.test('mergeMaps: later maps win key by key; undefined maps are skipped; inputs untouched', async (t) => {
    const a = { x: 1, y: 1, nested: { a: 1 } };
    const b = { y: 2, nested: { b: 2 } };
    const out = mergeMaps(a, undefined, b, { z: 3 });
    t.strictSame(out, { x: 1, y: 2, nested: { b: 2 }, z: 3 }, 'shallow: a nested map is replaced, not merged');
    t.strictSame(a, { x: 1, y: 1, nested: { a: 1 } });
    t.strictSame(b, { y: 2, nested: { b: 2 } });
    t.strictSame(mergeMaps(), {});
    t.not(mergeMaps(a), a, 'always a new object');
});

t.test('copyInto: "__proto__" and other special keys are own data properties, never prototypes', async (t) => {
    const hostile = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"bad": 1}}, "ok": 1}') as Dict;
    const out = copyInto({}, hostile);
    t.ok(Object.prototype.hasOwnProperty.call(out, '__proto__'), '__proto__ is an own key');
    t.equal(Object.getPrototypeOf(out), Object.prototype, 'the prototype is unchanged');
    t.equal((out as { polluted?: unknown }).polluted, undefined);
    t.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype is unchanged');
    t.same(Object.keys(out).sort(), ['__proto__', 'constructor', 'ok']);
    const merged = mergeMaps({ a: 1 }, hostile);
    t.equal(Object.getPrototypeOf(merged), Object.prototype);
    t.equal(JSON.stringify(merged), '{"a":1,"__proto__":{"polluted":true},"constructor":{"prototype":{"bad":1}},"ok":1}', 'kept as data');
    t.equal(copyInto(out, undefined), out, 'an undefined source leaves the target as is');
});

t.test('isPlainObject: objects only (not arrays, not null, not scalars)', async (t) => {
    t.ok(isPlainObject({}));
    t.ok(isPlainObject({ a: 1 }));
    t.notOk(isPlainObject([]));
    t.notOk(isPlainObject(null));
    t.notOk(isPlainObject(undefined));
    t.notOk(isPlainObject('x'));
    t.notOk(isPlainObject(1));
});

t.test('mergeAttributes: params, metadata and manifests each merge application → service → instance', async (t) => {
    const app: Application = {
        uuid: randomUUID(),
        name: 'sdc',
        owner_uuid: randomUUID(),
        params: { a: 'app', b: 'app', c: 'app' },
        metadata: { A: 'app', B: 'app', C: 'app' },
        manifests: { one: 'm-app-1', two: 'm-app-2', three: 'm-app-3' },
    };
    const svc: Service = {
        uuid: randomUUID(),
        name: 'imgapi',
        application_uuid: app.uuid,
        type: 'vm',
        params: { b: 'svc', c: 'svc' },
        metadata: { B: 'svc', C: 'svc' },
        manifests: { two: 'm-svc-2', three: 'm-svc-3' },
    };
    const inst: Instance = {
        uuid: randomUUID(),
        service_uuid: svc.uuid,
        type: 'vm',
        params: { c: 'inst' },
        metadata: { C: 'inst' },
        manifests: { three: 'm-inst-3' },
    };
    const m = mergeAttributes(app, svc, inst);
    t.strictSame(m.params, { a: 'app', b: 'svc', c: 'inst' });
    t.strictSame(m.metadata, { A: 'app', B: 'svc', C: 'inst' });
    t.strictSame(m.manifests, { one: 'm-app-1', two: 'm-svc-2', three: 'm-inst-3' });
    t.strictSame(Object.keys(m.manifests), ['one', 'two', 'three'], 'key order: first definition wins the position');

    const noInst = mergeAttributes(app, svc);
    t.strictSame(noInst.params, { a: 'app', b: 'svc', c: 'svc' }, 'without an instance: application → service');
    const { params: _svcParams, ...svcBare } = svc;
    const { params: _instParams, ...instBare } = inst;
    const bare = mergeAttributes({ uuid: app.uuid, name: 'x', owner_uuid: app.uuid }, svcBare, instBare);
    t.strictSame(bare.params, {}, 'absent maps merge to {}');
    t.strictSame(app.params, { a: 'app', b: 'app', c: 'app' }, 'the application is not modified');
});

t.test('loadParents: the service and its application; a missing one is a 404 naming it', async (t) => {
    const ctx = await modelCtx(t);
    const app = await anApplication(ctx);
    const svc = await aService(ctx, app.uuid);
    const got = await loadParents(ctx, svc.uuid);
    t.equal(got.service.uuid, svc.uuid);
    t.equal(got.application.uuid, app.uuid);

    const missing = randomUUID();
    isNotFound(t, await rejection(loadParents(ctx, missing)), `no such service: ${missing}`);

    const orphan = randomUUID();
    await ctx.store.put(BUCKET_OF.service, { uuid: orphan, name: 'orphan', application_uuid: missing, type: 'vm' });
    isNotFound(t, await rejection(loadParents(ctx, orphan)), `no such application: ${missing}`);
});

t.test('buildConfig: merged metadata, no user-script, SAPI-added uuids', async (t) => {
    const ctx = await modelCtx(t, { config: { server_uuid: randomUUID() } });
    const app = await anApplication(ctx, { metadata: { A: 'app', B: 'app', C: 'app', 'user-script': 'app script' } });
    const svc = await aService(ctx, app.uuid, { metadata: { B: 'svc', C: 'svc' } });
    const inst = await aVmInstance(ctx, svc.uuid, { metadata: { C: 'inst', D: 'inst', 'user-script': 'inst script' } });

    const doc = await buildConfig(ctx, inst.uuid);
    t.strictSame(doc.manifests, []);
    t.strictSame(doc.metadata, {
        A: 'app',
        B: 'svc',
        C: 'inst',
        D: 'inst',
        SERVER_UUID: ctx.config.server_uuid,
        ZONE_UUID: inst.uuid,
        INSTANCE_UUID: inst.uuid,
    });
    const stored = await ctx.store.get<Instance>(BUCKET_OF.instance, inst.uuid);
    t.equal(stored?.value.metadata?.['user-script'], 'inst script', 'user-script is left out of the document, not deleted');
});

t.test('buildConfig: SERVER_UUID is the merged params.server_uuid, else config server_uuid, else serverUuid', async (t) => {
    const configured = randomUUID();
    const camel = randomUUID();
    const appServer = randomUUID();
    const instServer = randomUUID();

    const ctx = await modelCtx(t, { config: { server_uuid: configured, serverUuid: camel } });
    const app = await anApplication(ctx);
    const svc = await aService(ctx, app.uuid);
    const plain = await aVmInstance(ctx, svc.uuid);
    t.equal((await buildConfig(ctx, plain.uuid)).metadata.SERVER_UUID, configured, 'config server_uuid');

    const placed = await aVmInstance(ctx, svc.uuid, { params: { server_uuid: instServer } });
    t.equal((await buildConfig(ctx, placed.uuid)).metadata.SERVER_UUID, instServer, "the instance's params.server_uuid");

    const app2 = await anApplication(ctx, { params: { server_uuid: appServer } });
    const svc2 = await aService(ctx, app2.uuid);
    const inherited = await aVmInstance(ctx, svc2.uuid);
    t.equal((await buildConfig(ctx, inherited.uuid)).metadata.SERVER_UUID, appServer, 'params.server_uuid inherited from the application');

    const ctx2 = await modelCtx(t, { config: { serverUuid: camel } });
    const app3 = await anApplication(ctx2);
    const svc3 = await aService(ctx2, app3.uuid);
    const inst3 = await aVmInstance(ctx2, svc3.uuid);
    t.equal((await buildConfig(ctx2, inst3.uuid)).metadata.SERVER_UUID, camel, 'config serverUuid when server_uuid is unset');

    const instMeta = await aVmInstance(ctx, svc.uuid, { metadata: { SERVER_UUID: 'mine', ZONE_UUID: 'mine', INSTANCE_UUID: 'mine' } });
    const doc = await buildConfig(ctx, instMeta.uuid);
    t.strictSame(
        [doc.metadata.SERVER_UUID, doc.metadata.ZONE_UUID, doc.metadata.INSTANCE_UUID],
        [configured, instMeta.uuid, instMeta.uuid],
        'SAPI-added keys override metadata of the same name',
    );
});

t.test('buildConfig: manifests are the full objects of the merged map, in merged key order', async (t) => {
    const ctx = await modelCtx(t);
    const m1 = await aManifest(ctx, { name: 'one' });
    const m2 = await aManifest(ctx, { name: 'two' });
    const m3 = await aManifest(ctx, { name: 'three', post_cmd: 'svcadm restart three' });
    const m4 = await aManifest(ctx, { name: 'four' });
    const app = await anApplication(ctx, { manifests: { one: m1.uuid, two: m2.uuid } });
    const svc = await aService(ctx, app.uuid, { manifests: { two: m3.uuid } });
    const inst = await aVmInstance(ctx, svc.uuid, { manifests: { four: m4.uuid, again: m1.uuid } });

    const doc = await buildConfig(ctx, inst.uuid);
    t.strictSame(
        doc.manifests.map((m) => m.uuid),
        [m1.uuid, m3.uuid, m4.uuid, m1.uuid],
        'the service overrides "two"; one manifest under two names appears twice',
    );
    t.strictSame(doc.manifests[1], m3, 'the stored manifest, whole');
});

t.test('buildConfig: a missing instance, service, application or manifest is a 404 naming it', async (t) => {
    const ctx = await modelCtx(t);
    const missing = randomUUID();
    isNotFound(t, await rejection(buildConfig(ctx, missing)), `no such instance: ${missing}`);

    const app = await anApplication(ctx);
    const svc = await aService(ctx, app.uuid);
    const gone = randomUUID();
    const inst = await aVmInstance(ctx, svc.uuid);
    await ctx.store.put(BUCKET_OF.instance, { ...inst, manifests: { dangling: gone } });
    isNotFound(t, await rejection(buildConfig(ctx, inst.uuid)), `no such manifest: ${gone}`);

    const orphan = randomUUID();
    await ctx.store.put(BUCKET_OF.instance, { uuid: orphan, service_uuid: gone, type: 'vm' });
    isNotFound(t, await rejection(buildConfig(ctx, orphan)), `no such service: ${gone}`);
});

t.test('configEtag: sha1 of the JSON of the sorted "path,value" strings', async (t) => {
    const doc = { metadata: { B: 2, A: 'x', LIST: [1, [2, 3]], ON: true, NONE: null, EMPTY: {} }, manifests: [{ name: 'n' }] };
    const expected = sha1(
        JSON.stringify(['manifests,name,n', 'metadata,A,x', 'metadata,B,2', 'metadata,LIST,1', 'metadata,LIST,2', 'metadata,LIST,3', 'metadata,ON,true']),
    );
    t.equal(configEtag(doc), expected, 'arrays flatten under their path; null and {} count for nothing');
    t.match(configEtag(doc), /^[0-9a-f]{40}$/);
    t.equal(
        configEtag({ manifests: [{ name: 'n' }], metadata: { EMPTY: {}, ON: true, A: 'x', LIST: [1, [2, 3]], B: 2 } }),
        expected,
        'key order does not matter',
    );
    t.not(configEtag({ ...doc, metadata: { ...doc.metadata, B: 3 } }), expected, 'a changed value changes the tag');
    t.not(configEtag({ ...doc, metadata: { ...doc.metadata, C: 1 } }), expected, 'an added key changes the tag');
    t.equal(configEtag({}), sha1('[]'));
    t.equal(configEtag({ a: 1 }), configEtag({ a: '1' }), 'values are compared as text');
});

t.test('configEtag of a built document follows changes at every level', async (t) => {
    const ctx = await modelCtx(t, { config: { server_uuid: randomUUID() } });
    const app = await anApplication(ctx, { metadata: { A: 1 } });
    const svc = await aService(ctx, app.uuid);
    const inst = await aVmInstance(ctx, svc.uuid);
    const before = configEtag(await buildConfig(ctx, inst.uuid));
    t.equal(configEtag(await buildConfig(ctx, inst.uuid)), before, 'stable while nothing changes');

    const stored = await ctx.store.get<Service>(BUCKET_OF.service, svc.uuid);
    await ctx.store.put(BUCKET_OF.service, { ...stored!.value, metadata: { A: 2 } });
    t.not(configEtag(await buildConfig(ctx, inst.uuid)), before, 'a service change reaches the instance tag');
});
