// Hostile input: seeded random and malformed requests (1,000; HOSTILE_REQUESTS
// sets another number, HOSTILE_SEED another seed). Every method meets every
// kind of path first, then the picks are random. Zero 5xx, every error a
// JSON body with a code, and the server still answers.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { anApplication, anInstance, aManifest, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';

const TOTAL = Number(process.env.HOSTILE_REQUESTS ?? 1_000);

/** encodeURIComponent, except a lone surrogate becomes invalid UTF-8 on the wire. */
function enc(s: string): string {
    try {
        return encodeURIComponent(s);
    } catch {
        return '%ED%A0%80';
    }
}

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let x = a;
        x = Math.imul(x ^ (x >>> 15), x | 1);
        x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
        return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
    };
}

t.test(`${TOTAL} random and malformed requests`, async (t) => {
    const h = await startSapi({ config: { maxBodyBytes: 65536 } });
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid);
    const agentSvc = await aService(h, app.uuid, { name: 'vm-agent', type: 'agent' });
    const inst = await anInstance(h, svc.uuid);
    const man = await aManifest(h);
    const seed = Number(process.env.HOSTILE_SEED ?? 82);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

    const weird = [
        '',
        ' ',
        'null',
        'undefined',
        '*',
        '(',
        ')',
        '\\',
        '\u0000',
        '*)(uuid=*',
        '(|(uuid=*))',
        '\\2a',
        '..',
        '../sapi_services',
        '%2e%2e%2f',
        'é',
        '日本語',
        '\u{1F600}',
        '\uD800',
        'a'.repeat(5000),
        '-1',
        '1e309',
        'true',
        'NaN',
        '__proto__',
        'constructor',
        randomUUID(),
        randomUUID().toUpperCase(),
        inst.uuid,
        svc.uuid,
        app.uuid,
        man.uuid,
        agentSvc.uuid,
    ];
    const values: (() => unknown)[] = [
        () => pick(weird),
        () => Math.floor(rnd() * 1e6) - 5e5,
        () => rnd() < 0.5,
        () => null,
        () => [pick(weird), 1, null],
        () => ({ [pick(weird)]: pick(weird) }),
        () => ({ __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } }),
        () => ({ nested: { deep: [{ x: pick(weird) }] } }),
    ];
    const fields = [
        'name',
        'owner_uuid',
        'uuid',
        'application_uuid',
        'service_uuid',
        'params',
        'metadata',
        'metadata_schema',
        'manifests',
        'type',
        'master',
        'async',
        'exists',
        'action',
        'image_uuid',
        'path',
        'template',
        'version',
        'post_cmd',
        'mode',
        'level',
        'limit',
        'marker',
        'server_uuid',
        'include_master',
        '__proto__',
    ];
    const w = (): string => enc(String(pick(weird)));
    const pathKinds: (() => string)[] = [
        () => '/applications',
        () => '/services',
        () => '/instances',
        () => '/manifests',
        () => '/mode',
        () => '/loglevel',
        () => '/cache',
        () => '/ping',
        () => `/applications/${w()}`,
        () => `/services/${w()}`,
        () => `/instances/${w()}`,
        () => `/instances/${inst.uuid}`,
        () => `/instances/${inst.uuid}/upgrade`,
        () => `/instances/${w()}/payload`,
        () => `/configs/${w()}`,
        () => `/manifests/${w()}`,
        () => `/servers/${w()}/instances`,
        () => '/nope',
        () => '/applications/..%2Fsapi_services%2F' + svc.uuid,
        () => '/%00',
        () => '/instances/' + inst.uuid + '/nope',
    ];
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'] as const;
    // The first requests pair every method with every kind of path; the rest pick both at random.
    const sweep = methods.flatMap((m) => pathKinds.map((p) => [m, p] as const));
    const body = (): { raw?: string; json?: unknown; type?: string } => {
        const r = rnd();
        if (r < 0.1) {
            return { raw: pick(['{', '{"a":', '[1,2', 'nul', '{"name": "x",}', '\u0000', '{"a":1}garbage']) };
        }
        if (r < 0.15) {
            return { raw: 'name=x&params[ram]=1&params[__proto__][p]=1&manifests[a]=b', type: 'application/x-www-form-urlencoded' };
        }
        if (r < 0.17) {
            return { raw: JSON.stringify({ name: 'x'.repeat(70_000) }) };
        }
        if (r < 0.2) {
            return {};
        }
        const obj: Record<string, unknown> = {};
        const n = Math.floor(rnd() * 6);
        for (let i = 0; i < n; i++) {
            Object.defineProperty(obj, pick(fields), { value: pick(values)(), enumerable: true, configurable: true, writable: true });
        }
        return { json: obj };
    };
    const query = (): string => {
        const n = Math.floor(rnd() * 3);
        const parts: string[] = [];
        for (let i = 0; i < n; i++) {
            parts.push(`${enc(pick(fields))}=${enc(String(pick(weird)))}`);
        }
        if (rnd() < 0.05) {
            parts.push('params[ram]=1&params[__proto__][x]=1');
        }
        return parts.length ? `?${parts.join('&')}` : '';
    };
    const versions = [undefined, '~1', '~2', '*', '~3', 'banana', '>=1', '', '\u00ff'];

    let tried = 0;
    let fivexx = 0;
    let codeless = 0;
    const samples: string[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
        while (next < TOTAL) {
            const [method, pathKind] = sweep[next] ?? [pick(methods), pick(pathKinds)];
            next++;
            const path = pathKind() + query();
            const b = body();
            const headers: Record<string, string> = {};
            const v = pick(versions);
            if (v !== undefined) {
                headers['accept-version'] = v.replace(/[^\x20-\x7e]/g, '?');
            }
            let raw: string | undefined;
            if (method !== 'GET' && method !== 'HEAD') {
                if (b.raw !== undefined) {
                    raw = b.raw;
                    headers['content-type'] = b.type ?? 'application/json';
                } else if (b.json !== undefined) {
                    raw = JSON.stringify(b.json);
                    headers['content-type'] = 'application/json';
                }
            }
            tried++;
            const r = await h.call(method, path, { headers, ...(raw === undefined ? {} : { raw }) });
            if (r.status >= 500) {
                fivexx++;
                if (samples.length < 5) {
                    samples.push(`${method} ${path} ${raw?.slice(0, 200) ?? ''} -> ${r.status} ${r.text.slice(0, 200)}`);
                }
            }
            if (r.status >= 400 && method !== 'HEAD' && (typeof r.body !== 'object' || r.body === null || typeof r.body.code !== 'string')) {
                codeless++;
                if (samples.length < 10) {
                    samples.push(`codeless: ${method} ${path} -> ${r.status} ${r.text.slice(0, 200)}`);
                }
            }
        }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    t.ok(tried >= sweep.length, `every method met every kind of path (${sweep.length} pairs)`);
    t.comment(`hostile-input (seed ${seed}): ${tried} requests tried, ${fivexx} 5xx seen, ${codeless} errors without a code`);
    for (const s of samples) {
        t.comment(s);
    }
    t.equal(fivexx, 0, 'no 5xx');
    t.equal(codeless, 0, 'every error has a JSON body with a code');
    const ping = await h.call('GET', '/ping');
    t.equal(ping.status, 200, 'still answering');
    t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
    const apps = await h.call('GET', `/applications/${app.uuid}`);
    t.equal(apps.status, 200, 'the application (which has services, so cannot be deleted) is intact');
    const list = await h.call('GET', '/instances', { version: '~2' });
    t.equal(list.status, 200, 'the store still lists');
});
