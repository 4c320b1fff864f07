// Error answers common to every route: bad JSON, unknown paths and methods, non-uuid path ids (404, never a file path), wrong types (409, never a crash), handler failures (500 InternalError, not a crash).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import { isError } from '../lib/api-assert.js';
import { aManifest, anAgentService, anApplication, anInstance, aService, OWNER } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

t.test('every answer carries Server, x-request-id (echoing x-request-id or request-id) and x-server-name', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    for (const [path, headers] of [
        ['/applications', { 'x-request-id': 'req-1' }],
        ['/nope', { 'request-id': 'req-2' }],
        [`/services/${randomUUID()}`, {}],
    ] as [string, Record<string, string>][]) {
        const r = await h.call('GET', path, { headers });
        t.equal(r.headers.get('server'), 'sapi/2.1.2', `${path}: Server`);
        t.ok(r.headers.get('x-server-name'), `${path}: x-server-name`);
        const given = headers['x-request-id'] ?? headers['request-id'];
        if (given) {
            t.equal(r.headers.get('x-request-id'), given, `${path}: request id echoed`);
        } else {
            t.match(r.headers.get('x-request-id'), /^[0-9a-f-]{36}$/, `${path}: a fresh request id`);
        }
    }
});

t.test('a malformed JSON body is 400 InvalidContent "Invalid JSON: …"', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    isError(t, await h.call('POST', '/applications', { raw: '{"name": "sdc",' }), 400, 'InvalidContent', /^Invalid JSON: /);
    isError(t, await h.call('PUT', `/applications/${randomUUID()}`, { raw: 'nope' }), 400, 'InvalidContent', /^Invalid JSON: /);
    t.strictSame((await h.call('GET', '/applications')).body, [], 'nothing was written');
});

t.test('an unknown path is 404 ResourceNotFound "<path> does not exist"', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    isError(t, await h.call('GET', '/nope'), 404, 'ResourceNotFound', '/nope does not exist');
    isError(t, await h.call('GET', '/images'), 404, 'ResourceNotFound', '/images does not exist');
    isError(t, await h.call('POST', '/applications/x/y'), 404, 'ResourceNotFound', '/applications/x/y does not exist');
    const r = await h.call('GET', '/nope');
    t.equal(r.headers.get('server'), 'sapi/2.1.2', 'the usual headers are on error answers too');
    t.ok(r.headers.get('x-request-id'));
});

t.test('a known path with a wrong method is 405 MethodNotAllowedError with an Allow header', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    let r = await h.call('PATCH', '/applications');
    isError(t, r, 405, 'MethodNotAllowedError', 'PATCH is not allowed');
    t.match(r.headers.get('allow'), /GET/);
    t.match(r.headers.get('allow'), /POST/);
    r = await h.call('DELETE', '/manifests');
    isError(t, r, 405, 'MethodNotAllowedError', 'DELETE is not allowed');
    r = await h.call('PUT', `/manifests/${randomUUID()}`, { body: {} });
    isError(t, r, 405, 'MethodNotAllowedError', 'PUT is not allowed');
    t.notMatch(r.headers.get('allow') ?? '', /PUT/, 'there is no update route for manifests');
    isError(t, await h.call('DELETE', '/mode'), 405, 'MethodNotAllowedError', 'DELETE is not allowed');
});

t.test('a path id that is not a uuid is 404 no such <kind>: <raw>', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const routes: [string, string, string][] = [
        ['GET', '/applications/not-a-uuid', 'application'],
        ['DELETE', '/applications/not-a-uuid', 'application'],
        ['PUT', '/applications/not-a-uuid', 'application'],
        ['GET', '/services/not-a-uuid', 'service'],
        ['DELETE', '/services/not-a-uuid', 'service'],
        ['GET', '/instances/not-a-uuid', 'instance'],
        ['DELETE', '/instances/not-a-uuid', 'instance'],
        ['GET', '/instances/not-a-uuid/payload', 'instance'],
        ['GET', '/manifests/not-a-uuid', 'manifest'],
        ['DELETE', '/manifests/not-a-uuid', 'manifest'],
        ['GET', '/configs/not-a-uuid', 'instance'],
    ];
    for (const [method, path, kind] of routes) {
        t.comment(`${method} ${path}`);
        isError(
            t,
            await h.call(method, path, method === 'PUT' ? { body: { metadata: { a: 1 } } } : {}),
            404,
            'ResourceNotFound',
            `no such ${kind}: not-a-uuid`,
        );
    }
});

t.test('..%2F traversal in a path id never reaches another bucket', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid);
    const m = await aManifest(h);

    const sneaky = `..%2Fsapi_services%2F${svc.uuid}`;
    const raw = `../sapi_services/${svc.uuid}`;
    isError(t, await h.call('GET', `/applications/${sneaky}`), 404, 'ResourceNotFound', `no such application: ${raw}`);
    isError(t, await h.call('DELETE', `/applications/${sneaky}`), 404, 'ResourceNotFound', `no such application: ${raw}`);
    isError(t, await h.call('PUT', `/applications/${sneaky}`, { body: { metadata: { a: 1 } } }), 404, 'ResourceNotFound', `no such application: ${raw}`);
    isError(
        t,
        await h.call('GET', `/manifests/..%2Fsapi_instances%2F${inst.uuid}`),
        404,
        'ResourceNotFound',
        `no such manifest: ../sapi_instances/${inst.uuid}`,
    );
    isError(t, await h.call('DELETE', `/instances/..%2Fsapi_manifests%2F${m.uuid}`), 404, 'ResourceNotFound', `no such instance: ../sapi_manifests/${m.uuid}`);
    isError(t, await h.call('GET', `/configs/..%2F..%2Fsapi_instances%2F${inst.uuid}`), 404, 'ResourceNotFound');

    t.equal((await h.call('GET', `/services/${svc.uuid}`)).status, 200, 'the service is still there');
    t.equal((await h.call('GET', `/manifests/${m.uuid}`)).status, 200, 'the manifest is still there');
    t.equal((await h.call('GET', `/instances/${inst.uuid}`)).status, 200, 'the instance is still there');
});

t.test('a sweep of wrong JSON types over every write route: always 4xx, never 5xx', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const agentSvc = await anAgentService(h, app.uuid);
    const inst = await anInstance(h, svc.uuid);
    const weird: unknown[] = [5, -1.5, true, false, null, 'x', '', [], ['a'], {}, { a: { b: 1 } }];
    const fields: Record<string, string[]> = {
        'POST /applications': ['name', 'owner_uuid', 'uuid', 'params', 'metadata', 'metadata_schema', 'manifests', 'master'],
        'POST /services': ['name', 'application_uuid', 'uuid', 'type', 'params', 'metadata', 'manifests', 'master'],
        'POST /instances': ['service_uuid', 'uuid', 'params', 'metadata', 'manifests', 'master', 'async', 'exists'],
        'POST /manifests': ['name', 'path', 'template', 'post_cmd', 'post_cmd_linux', 'version', 'uuid', 'master'],
        [`PUT /applications/${app.uuid}`]: ['action', 'params', 'metadata', 'metadata_schema', 'manifests', 'owner_uuid'],
        [`PUT /services/${svc.uuid}`]: ['action', 'params', 'metadata', 'manifests'],
        [`PUT /instances/${inst.uuid}`]: ['action', 'params', 'metadata', 'manifests'],
        [`PUT /instances/${inst.uuid}/upgrade`]: ['image_uuid'],
        'POST /mode': ['mode'],
        'POST /loglevel': ['level'],
    };
    const valid: Record<string, Record<string, unknown>> = {
        'POST /applications': { name: 'x', owner_uuid: OWNER },
        'POST /services': { name: 'x', application_uuid: app.uuid },
        'POST /instances': { service_uuid: svc.uuid },
        'POST /manifests': { name: 'x', path: '/x', template: 'x' },
    };
    let count = 0;
    const bad: string[] = [];
    for (const [route, keys] of Object.entries(fields)) {
        const [method, path] = route.split(' ') as [string, string];
        for (const key of keys) {
            for (const value of weird) {
                const body = { ...(valid[route] ?? {}), [key]: value };
                const r = await h.call(method, path, { body });
                count++;
                if (r.status >= 500 || (r.status >= 400 && typeof r.body?.code !== 'string')) {
                    bad.push(`${route} ${JSON.stringify(body)} → ${r.status} ${r.text}`);
                }
            }
        }
    }
    // An agent instance's self-adoption with wrong types, too.
    for (const value of weird) {
        const r = await h.call('POST', '/instances', { body: { service_uuid: agentSvc.uuid, uuid: randomUUID(), params: { server_uuid: value } } });
        count++;
        if (r.status >= 500) {
            bad.push(`adoption server_uuid=${JSON.stringify(value)} → ${r.status} ${r.text}`);
        }
    }
    t.strictSame(bad, [], `${count} requests, none answered 5xx or without a code`);
    t.equal((await h.call('GET', '/ping')).status, 200, 'the server is still up');
    t.equal((await h.call('POST', '/loglevel', { body: { level: 'fatal' } })).status, 200);
});

t.test('an unexpected failure inside a handler is a 500 InternalError answer, not a crash', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const real = new SqliteStore({ path: join(dir, 'sapi.sqlite') });
    await real.init();
    let broken = false;
    const store = new Proxy(real, {
        get(target, prop, receiver) {
            const v = Reflect.get(target, prop, receiver) as unknown;
            if (broken && (prop === 'get' || prop === 'find')) {
                return () => Promise.reject(new TypeError('simulated bug'));
            }
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
    });
    const h = await startSapi({ store, dir });
    t.teardown(h.close);
    const app = await anApplication(h);
    broken = true;
    isError(t, await h.call('GET', `/applications/${app.uuid}`), 500, 'InternalError');
    isError(t, await h.call('GET', '/manifests'), 500, 'InternalError');
    broken = false;
    t.equal((await h.call('GET', `/applications/${app.uuid}`)).status, 200, 'the server is still up and serving');
});
