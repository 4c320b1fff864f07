// PUT /applications|services|instances/:uuid: the update, replace and delete actions, for each kind, and their errors.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

type Kind = 'applications' | 'services' | 'instances';
const KIND_NAME: Record<Kind, string> = { applications: 'application', services: 'service', instances: 'instance' };

/** One object of each kind, all with the same starting params/metadata. */
async function objectOf(h: Harness, kind: Kind): Promise<string> {
    const start = { params: { a: 1, b: { x: 1 } }, metadata: { k1: 'v1', k2: 'v2' } };
    const app = await anApplication(h, kind === 'applications' ? start : {});
    if (kind === 'applications') {
        return app.uuid as string;
    }
    const svc = await aService(h, app.uuid, kind === 'services' ? start : {});
    if (kind === 'services') {
        return svc.uuid as string;
    }
    return (await anInstance(h, svc.uuid, start)).uuid as string;
}

for (const kind of ['applications', 'services', 'instances'] as const) {
    t.test(`${kind}: action update (the default) merges key-wise; nested objects are replaced`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const r = await h.call('PUT', `/${kind}/${uuid}`, { body: { params: { b: { y: 2 }, c: 3 }, metadata: { k2: 'new' } } });
        t.equal(r.status, 200);
        t.strictSame(r.body.params, { a: 1, b: { y: 2 }, c: 3 });
        t.strictSame(r.body.metadata, { k1: 'v1', k2: 'new' });
        const got = (await h.call('GET', `/${kind}/${uuid}`)).body;
        t.strictSame(got, r.body, 'the response is the stored object after the change');

        const explicit = await h.call('PUT', `/${kind}/${uuid}`, { body: { action: 'update', metadata: { k3: 'v3' } } });
        t.strictSame(explicit.body.metadata, { k1: 'v1', k2: 'new', k3: 'v3' });
        const empty = await h.call('PUT', `/${kind}/${uuid}`, { body: { action: '', metadata: { k4: 'v4' } } });
        t.strictSame(empty.body.metadata, { k1: 'v1', k2: 'new', k3: 'v3', k4: 'v4' }, 'an empty action means update');
    });

    t.test(`${kind}: action replace swaps each given map wholesale, leaves the others`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const r = await h.call('PUT', `/${kind}/${uuid}`, { body: { action: 'replace', metadata: { only: 'this' } } });
        t.equal(r.status, 200);
        t.strictSame(r.body.metadata, { only: 'this' });
        t.strictSame(r.body.params, { a: 1, b: { x: 1 } }, 'params were not given, so are untouched');
    });

    t.test(`${kind}: action delete removes the named keys whatever their value`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const r = await h.call('PUT', `/${kind}/${uuid}`, {
            body: { action: 'delete', metadata: { k1: null, absent: 'x' }, params: { b: 'anything' }, manifests: { none: null, other: 'x' } },
        });
        t.equal(r.status, 200);
        t.strictSame(r.body.metadata, { k2: 'v2' });
        t.strictSame(r.body.params, { a: 1 });
        t.strictSame(r.body.manifests, {}, 'an absent map becomes {}');
    });

    t.test(`${kind}: actions are case-insensitive; an unknown action is 409 InvalidArgument`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const up = await h.call('PUT', `/${kind}/${uuid}`, { body: { action: 'UPDATE', metadata: { k3: 1 } } });
        t.equal(up.status, 200);
        t.equal(up.body.metadata.k3, 1);
        const rep = await h.call('PUT', `/${kind}/${uuid}`, { body: { action: 'RePlAcE', params: { z: 1 } } });
        t.strictSame(rep.body.params, { z: 1 });
        const del = await h.call('PUT', `/${kind}/${uuid}`, { body: { action: 'Delete', params: { z: true } } });
        t.strictSame(del.body.params, {});

        const before = (await h.call('GET', `/${kind}/${uuid}`)).body;
        for (const action of ['merge', 5]) {
            const bad = await h.call('PUT', `/${kind}/${uuid}`, { body: { action, metadata: { x: 1 } } });
            isError(t, bad, 409, 'InvalidArgument');
            t.ok(bad.body.message === '' || bad.body.message === `invalid action: ${action}`, `message for ${action}: ${bad.body.message}`);
        }
        t.strictSame((await h.call('GET', `/${kind}/${uuid}`)).body, before, 'nothing was written');
    });

    t.test(`${kind}: absent or falsy fields are left alone`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const before = (await h.call('GET', `/${kind}/${uuid}`)).body;
        for (const action of ['update', 'replace', 'delete']) {
            const r = await h.call('PUT', `/${kind}/${uuid}`, { body: { action, params: null, metadata: '', manifests: 0 } });
            t.equal(r.status, 200, `${action} with only falsy fields`);
            t.strictSame(r.body, before, `${action}: nothing changed`);
        }
        const r = await h.call('PUT', `/${kind}/${uuid}`, { body: {} });
        t.equal(r.status, 200);
        t.strictSame(r.body, before, 'an empty body changes nothing');
    });

    t.test(`${kind}: identity fields (name, uuid, parents, type) cannot be changed`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const before = (await h.call('GET', `/${kind}/${uuid}`, { version: '~2' })).body;
        const r = await h.call('PUT', `/${kind}/${uuid}`, {
            body: { name: 'renamed', uuid: randomUUID(), application_uuid: randomUUID(), service_uuid: randomUUID(), type: 'agent' },
            version: '~2',
        });
        t.equal(r.status, 200);
        t.strictSame(r.body, before);
    });

    t.test(`${kind}: updating a missing object is 404 no such ${KIND_NAME[kind]}`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = randomUUID();
        isError(t, await h.call('PUT', `/${kind}/${uuid}`, { body: { metadata: { a: 1 } } }), 404, 'ResourceNotFound', `no such ${KIND_NAME[kind]}: ${uuid}`);
        t.equal((await h.call('GET', `/${kind}/${uuid}`)).status, 404, 'and nothing was created');
    });

    t.test(`${kind}: D1b an unknown manifest in an update is 404, nothing written; a known one is stored`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const before = (await h.call('GET', `/${kind}/${uuid}`)).body;
        const missing = randomUUID();
        isError(
            t,
            await h.call('PUT', `/${kind}/${uuid}`, { body: { manifests: { m: missing }, metadata: { x: 1 } } }),
            404,
            'ResourceNotFound',
            `no such manifest: ${missing}`,
        );
        t.strictSame((await h.call('GET', `/${kind}/${uuid}`)).body, before, 'nothing was written');
        const m = await aManifest(h);
        const ok = await h.call('PUT', `/${kind}/${uuid}`, { body: { manifests: { m: m.uuid } } });
        t.equal(ok.status, 200);
        t.strictSame(ok.body.manifests, { m: m.uuid });
    });

    t.test(`${kind}: wrong types in an update are 409 InvalidArgument, nothing written`, async (t) => {
        const h = await startSapi();
        t.teardown(h.close);
        const uuid = await objectOf(h, kind);
        const before = (await h.call('GET', `/${kind}/${uuid}`)).body;
        isError(t, await h.call('PUT', `/${kind}/${uuid}`, { body: { params: 'x' } }), 409, 'InvalidArgument', 'params must be object');
        isError(t, await h.call('PUT', `/${kind}/${uuid}`, { body: { metadata: [1] } }), 409, 'InvalidArgument', 'metadata must be object');
        isError(t, await h.call('PUT', `/${kind}/${uuid}`, { body: { manifests: { a: 1 } } }), 409, 'InvalidArgument');
        t.strictSame((await h.call('GET', `/${kind}/${uuid}`)).body, before, 'nothing was written');
    });
}
