// GetConfig on the Moray backend beside the embedded store.
//
// The project's Moray test server (test/lib/moray-test-server.ts: the fake
// Moray speaking the real protocol, in memory) runs in its own process; the
// same DC-like tree (BENCH_MORAY_CONFIG_INSTANCES instances, default 10,000,
// of 20 services of one application, three manifests) is written into it
// and into an embedded store, and a SAPI server in its own process serves
// each. Then, at concurrency 32, for each backend:
//   - GetConfig 200 over a working set of 1,000 instances (config-agents
//     polling; on Moray the kept documents are revalidated by the change
//     feed, a few findObjects a second for the whole process, not one read
//     per document);
//   - GetConfig 200, every request a different instance (each one a read of
//     its instance from Moray; services, applications and manifests are
//     kept in memory within the one-second bound);
//   - GetConfig 304 (If-None-Match with the tag) over the working set;
//   - GetConfig 200 one request at a time (p50 of a lone request).
// The Moray figures are those of the fake Moray on this machine, not of a
// PostgreSQL-backed Moray: they measure SAPI's side of the path.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { withIndexes } from '../lib/model/instance-records.js';
import { MorayStore } from '../lib/stor/moray/index.js';
import { SqliteStore } from '../lib/stor/sqlite/index.js';
import type { BatchOp, JsonObject, Store } from '../lib/stor/store.js';
import { fmt, load, request, seededInstance, startServer, type ChildServer, type LoadResult } from './lib.js';

const here = dirname(fileURLToPath(import.meta.url));
const MORAY_SERVER_JS = join(here, '..', 'test', 'lib', 'moray-test-server.js');
const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';
const WORKING_SET = 1000;
/** What GetConfig on Moray is held to (concurrency 32). */
const TARGET = { p50Ms: 2, rps: 5000, notModified: 10_000 };

export interface Tree {
    puts: { bucket: 'sapi_applications' | 'sapi_services' | 'sapi_manifests'; value: JsonObject }[];
    instances: JsonObject[];
}

/**
 * The objects of the tree (the same for both stores): an application, 20
 * services (the first ten of type agent), three manifests and `n` instances
 * (instance i on server i % 2000, so five a server at 10,000).
 */
export function tree(n: number): Tree {
    const puts: Tree['puts'] = [];
    const manifest = (name: string): string => {
        const uuid = randomUUID();
        const template = `{"${name}": {{{${name.toUpperCase()}}}}, "dc": "{{{datacenter_name}}}", "pad": "${'x'.repeat(400)}"}`;
        puts.push({ bucket: 'sapi_manifests', value: { uuid, name, path: `/opt/smartdc/${name}/etc/config.json`, template, version: '1.0.0' } });
        return uuid;
    };
    const [registrar, configAgent, own] = [manifest('registrar'), manifest('config-agent'), manifest('service')];
    const app = randomUUID();
    const metadata: Record<string, unknown> = { datacenter_name: 'us-east-1', dns_domain: 'example.com' };
    for (let k = 0; k < 60; k++) {
        metadata[`KEY_${k}`] = `value-${k}-${'v'.repeat(20)}`;
    }
    puts.push({
        bucket: 'sapi_applications',
        value: { uuid: app, name: 'sdc', owner_uuid: OWNER, metadata, manifests: { registrar, 'config-agent': configAgent } },
    });
    const services = Array.from({ length: 20 }, () => randomUUID());
    for (const [i, s] of services.entries()) {
        puts.push({
            bucket: 'sapi_services',
            value: {
                uuid: s,
                name: `svc${i}`,
                application_uuid: app,
                type: i < 10 ? 'agent' : 'vm',
                params: { image_uuid: randomUUID() },
                metadata: { SERVICE_NAME: `svc${i}.example.com` },
                manifests: { service: own },
            },
        });
    }
    const instances: JsonObject[] = [];
    for (let i = 0; i < n; i++) {
        const server = `00000000-0000-4000-8000-${String(i % 2000).padStart(12, '0')}`;
        instances.push(withIndexes(seededInstance(i, services, { server_uuid: server }, { ADMIN_IP: `10.0.${(i >> 8) & 255}.${i & 255}` })));
    }
    return { puts, instances };
}

/** Writes the tree into `store`, instances 1,000 to a batch. */
export async function write(store: Store, t: Tree): Promise<void> {
    for (const p of t.puts) {
        await store.put(p.bucket, p.value);
    }
    for (let i = 0; i < t.instances.length; i += 1000) {
        const ops: BatchOp[] = t.instances.slice(i, i + 1000).map((value) => ({ op: 'put', bucket: 'sapi_instances', value }));
        await store.batch(ops);
    }
}

/** Writes the tree into the Moray at 127.0.0.1:`port` (its SAPI buckets set up first), in full mode. */
export async function seedMoray(port: number, t: Tree): Promise<void> {
    const ms = new MorayStore({ connect: { host: '127.0.0.1', port } });
    try {
        await ms.init();
        await write(ms, t);
        await ms.setMeta('mode', 'full');
    } finally {
        await ms.close();
    }
}

/** The Moray test server in its own process; resolves with its port. */
export async function startMoray(): Promise<{ port: number; proc: ChildProcess }> {
    const proc = spawn(process.execPath, [MORAY_SERVER_JS, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    const port = await new Promise<number>((resolve, reject) => {
        proc.once('exit', (code) => reject(new Error(`moray test server exited (${String(code)})`)));
        lines.on('line', (l) => {
            const m = /^listening on (\d+)/.exec(l);
            if (m) {
                resolve(Number(m[1]));
            }
        });
    });
    return { port, proc };
}

/** A config file for SAPI on the Moray at 127.0.0.1:`morayPort` (full mode, cache in `dir`), listening on `port`; its path. */
export function morayServerConfig(dir: string, port: number, morayPort: number): string {
    const path = join(dir, `moray-${port}.json`);
    writeFileSync(
        path,
        JSON.stringify({
            port,
            host: '127.0.0.1',
            log_level: 'error',
            mode: 'full',
            store: { backend: 'moray', path: join(dir, `cache-${port}.sqlite`) },
            moray: { host: '127.0.0.1', port: morayPort },
        }),
    );
    return path;
}

interface Figures {
    hot: LoadResult;
    distinct: LoadResult;
    notModified: LoadResult;
    alone: LoadResult;
}

async function measure(srv: ChildServer, uuids: string[], seconds: number): Promise<Figures> {
    const n = uuids.length;
    const path = (i: number): string => `/configs/${uuids[i % n] as string}`;
    const hotPath = (i: number): string => path(i % Math.min(WORKING_SET, n));
    // Warm-up (JIT, connections), and the working set's tags.
    const tags: string[] = [];
    await load(32, { total: Math.min(WORKING_SET, n) }, async (i) => {
        const r = await request(srv.url, 'GET', hotPath(i));
        tags[i] = String(r.headers.etag);
        return r;
    });
    await load(32, { seconds: 1 }, (i) => request(srv.url, 'GET', path(n - 1 - (i % 1000))));
    const hot = await load(32, { seconds }, (i) => request(srv.url, 'GET', hotPath(i)));
    let next = Math.floor(n / 2);
    const distinct = await load(32, { seconds }, () => request(srv.url, 'GET', path(next++)));
    const notModified = await load(
        32,
        { seconds },
        (i) => request(srv.url, 'GET', hotPath(i), undefined, { 'if-none-match': tags[i % tags.length] as string }),
        (r) => r.status === 304,
    );
    const alone = await load(1, { seconds: Math.max(1, seconds / 2) }, () => request(srv.url, 'GET', path(next++)));
    return { hot, distinct, notModified, alone };
}

function row(what: string, m: LoadResult, e: LoadResult, target = ''): string {
    const one = (r: LoadResult): string =>
        `${fmt(r.rps, 0).padStart(6)} req/s p50 ${fmt(r.p50, 2)} p99 ${fmt(r.p99, 2)} ms${r.errors ? ` errors ${r.errors}` : ''}`;
    return `${what.padEnd(34)} moray: ${one(m)}   | embedded: ${one(e)}${target}`;
}

function verdict(ok: boolean, what: string): string {
    return `  (target ${what}: ${ok ? 'met' : 'NOT met'})`;
}

export async function benchGetConfigMoray(seconds: number): Promise<void> {
    const n = Number(process.env.BENCH_MORAY_CONFIG_INSTANCES ?? 10_000);
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-moray-'));
    const moray = await startMoray();
    const servers: ChildServer[] = [];
    try {
        const t = tree(n);
        const t0 = performance.now();
        await seedMoray(moray.port, t);
        const local = new SqliteStore({ path: join(dir, 'embedded.sqlite') });
        await local.init();
        await write(local, t);
        await local.close();
        console.log(`seeded ${n} instances into the Moray test server and an embedded store in ${fmt((performance.now() - t0) / 1000)} s`);

        const base = 18000 + Math.floor(Math.random() * 1000);
        const morayCfg = morayServerConfig(dir, base, moray.port);
        const embeddedCfg = join(dir, 'embedded.json');
        writeFileSync(
            embeddedCfg,
            JSON.stringify({ port: base + 1, host: '127.0.0.1', log_level: 'error', store: { backend: 'sqlite', path: join(dir, 'embedded.sqlite') } }),
        );
        const uuids = t.instances.map((v) => String(v.uuid));

        const onMoray = await startServer(morayCfg, base);
        servers.push(onMoray);
        const m = await measure(onMoray, uuids, seconds);
        await onMoray.stop();
        servers.pop();
        const embedded = await startServer(embeddedCfg, base + 1);
        servers.push(embedded);
        const e = await measure(embedded, uuids, seconds);

        console.log(
            row(
                `GetConfig 200, ${WORKING_SET} instances c=32`,
                m.hot,
                e.hot,
                verdict(m.hot.p50 <= TARGET.p50Ms && m.hot.rps >= TARGET.rps, `p50 ≤ ${TARGET.p50Ms} ms, ≥ ${TARGET.rps} req/s`),
            ),
        );
        console.log(row('GetConfig 200, each a new one c=32', m.distinct, e.distinct));
        console.log(row('GetConfig 304 c=32', m.notModified, e.notModified, verdict(m.notModified.rps >= TARGET.notModified, `≥ ${TARGET.notModified} req/s`)));
        console.log(row('GetConfig 200 c=1', m.alone, e.alone));
    } finally {
        for (const s of servers) {
            await s.stop();
        }
        moray.proc.kill('SIGTERM');
        rmSync(dir, { recursive: true, force: true });
    }
}

// Run on its own: node dist/bench/getconfig-moray.js [seconds]
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
    await benchGetConfigMoray(Number(process.argv[2] ?? process.env.BENCH_SECONDS ?? 10));
}
