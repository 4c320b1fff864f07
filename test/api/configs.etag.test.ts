// GetConfigs ETag: a quoted sha1 of the sorted flattened document, honoured by If-None-Match (304) and If-Match (412).

import { createHash, randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { aManifest, anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

const SAPI_SERVER = '44454c4c-3700-1039-8050-b2c04f544432';

// ---- the ETag rule, written out again here so the test does not trust the server's code

function flatten(v: unknown, path: string | null, out: string[]): void {
    if (v === null || v === undefined) {
        return;
    }
    if (Array.isArray(v)) {
        v.forEach((e) => flatten(e, path, out));
        return;
    }
    if (typeof v === 'object') {
        for (const [k, child] of Object.entries(v)) {
            flatten(child, path === null ? k : `${path},${k}`, out);
        }
        return;
    }
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- only JSON scalars reach here
    out.push(`${path},${String(v)}`);
}

function expectedEtag(doc: unknown): string {
    const out: string[] = [];
    flatten(doc, null, out);
    out.sort();
    return createHash('sha1').update(JSON.stringify(out), 'utf8').digest('hex');
}

const sha1 = (s: string): string => createHash('sha1').update(s, 'utf8').digest('hex');

async function configured(h: Harness): Promise<string> {
    const m = await aManifest(h, { name: 'registrar', post_cmd: 'svcadm restart registrar', template: { port: 80, tags: ['a', 'b'] } });
    const app = await anApplication(h, { metadata: { PORT: 80, ENABLED: true, EMPTY: {}, NONE: null, LIST: [1, [2, 3]] }, manifests: { registrar: m.uuid } });
    const svc = await aService(h, app.uuid, { metadata: { ROLE: 'imgapi' } });
    return (await anInstance(h, svc.uuid, { manifests: { again: m.uuid } })).uuid as string;
}

t.test('a hand-computed tag: sorted "path,value" strings, JSON, sha1, quoted', async (t) => {
    const h = await startSapi({ config: { server_uuid: SAPI_SERVER } });
    t.teardown(h.close);
    const app = await anApplication(h, { metadata: { PORT: 80 } });
    const svc = await aService(h, app.uuid);
    const uuid = randomUUID();
    await anInstance(h, svc.uuid, { uuid });

    const r = await h.call('GET', `/configs/${uuid}`);
    t.equal(r.status, 200);
    const text = JSON.stringify([`metadata,INSTANCE_UUID,${uuid}`, 'metadata,PORT,80', `metadata,SERVER_UUID,${SAPI_SERVER}`, `metadata,ZONE_UUID,${uuid}`]);
    t.equal(r.headers.get('etag'), `"${sha1(text)}"`);
});

t.test('the tag covers the whole document: manifests, nested values, arrays, booleans; null and {} count for nothing', async (t) => {
    const h = await startSapi({ config: { server_uuid: SAPI_SERVER } });
    t.teardown(h.close);
    const uuid = await configured(h);
    const r = await h.call('GET', `/configs/${uuid}`);
    t.equal(r.status, 200);
    const entries: string[] = [];
    flatten(r.body, null, entries);
    t.ok(entries.includes('manifests,name,registrar'), 'manifest fields are flattened under "manifests"');
    t.ok(entries.includes('manifests,template,tags,a'), 'array elements share their parent path');
    t.ok(entries.includes('metadata,PORT,80') && entries.includes('metadata,ENABLED,true'));
    t.equal(r.headers.get('etag'), `"${expectedEtag(r.body)}"`);
});

t.test('If-None-Match with the current tag → 304 and no body, in every accepted spelling', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = await configured(h);
    const first = await h.call('GET', `/configs/${uuid}`);
    const tag = expectedEtag(first.body);
    t.equal(first.headers.get('etag'), `"${tag}"`);

    for (const spelling of [`"${tag}"`, tag, `W/"${tag}"`, `W/${tag}`, `"0000", "${tag}"`, `"0000",${tag}`, '*']) {
        const r = await h.call('GET', `/configs/${uuid}`, { headers: { 'if-none-match': spelling } });
        t.equal(r.status, 304, `If-None-Match: ${spelling}`);
        t.equal(r.text, '', 'no body');
    }
});

t.test('a stale If-None-Match gets 200 with the new document and tag', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = await configured(h);
    const old = (await h.call('GET', `/configs/${uuid}`)).headers.get('etag') as string;

    const upd = await h.call('PUT', `/instances/${uuid}`, { body: { metadata: { NEW: 'value' } } });
    t.equal(upd.status, 200);
    const r = await h.call('GET', `/configs/${uuid}`, { headers: { 'if-none-match': old } });
    t.equal(r.status, 200);
    t.equal(r.body.metadata.NEW, 'value');
    t.not(r.headers.get('etag'), old, 'the tag changed with the document');
    t.equal(r.headers.get('etag'), `"${expectedEtag(r.body)}"`);
    t.equal((await h.call('GET', `/configs/${uuid}`, { headers: { 'if-none-match': r.headers.get('etag') as string } })).status, 304);
});

t.test('If-Match: a mismatch is 412 PreconditionFailed; the current tag or * is 200', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = await configured(h);
    const tag = (await h.call('GET', `/configs/${uuid}`)).headers.get('etag') as string;

    isError(t, await h.call('GET', `/configs/${uuid}`, { headers: { 'if-match': '"0000"' } }), 412, 'PreconditionFailed');
    for (const spelling of [tag, tag.replace(/"/g, ''), `W/${tag}`, `"0000", ${tag}`, '*']) {
        const r = await h.call('GET', `/configs/${uuid}`, { headers: { 'if-match': spelling } });
        t.equal(r.status, 200, `If-Match: ${spelling}`);
    }
});

t.test('If-Modified-Since / If-Unmodified-Since have no effect', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const uuid = await configured(h);
    const future = new Date(Date.now() + 86_400_000).toUTCString();
    const past = new Date(0).toUTCString();
    t.equal((await h.call('GET', `/configs/${uuid}`, { headers: { 'if-modified-since': future } })).status, 200);
    t.equal((await h.call('GET', `/configs/${uuid}`, { headers: { 'if-unmodified-since': past } })).status, 200);
});
