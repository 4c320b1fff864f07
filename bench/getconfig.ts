// GetConfig at DC scale, against a server in its own process on the
// embedded store, with the client of the create figures (HTTP/1.1
// keep-alive, `Accept-Version: ~2`), and the same client against the
// trivial server of bench/ceiling.ts answering as many bytes (the ceiling).
// CreateInstance has its own benchmark (bench/create.ts): on a fresh store,
// with realistic bodies.
//
// The store holds BENCH_CONFIG_INSTANCES instances (default 200,000, the
// scale of SAPI 2.1.2's figures) of 20 services of one application, with
// metadata at every level and three manifests, written straight into the
// store (the API path is measured by CreateInstance). Then, at concurrency
// 32:
//   - GetConfig 200, first fetch: every request a different instance, as
//     when every config-agent of a DC starts (the document is assembled);
//   - GetConfig 200, again: the same 1,000 instances over and over;
//   - GetConfig 304: config-agent's poll, If-None-Match with the tag each
//     instance got on its first fetch, over every instance fetched.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SqliteStore } from '../lib/stor/sqlite/index.js';
import { startCeiling } from './ceiling.js';
import { fmt, load, putInstances, request, rss, seededInstance, startServer, writeConfig, type LoadResult } from './lib.js';

const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';

/** SAPI 2.1.2 with this client, concurrency 32, by number of instances in the store. */
const V212_BY_N: Record<number, { getConfig: number; notModified: number }> = {
    10_000: { getConfig: 659, notModified: 1072 },
    200_000: { getConfig: 744, notModified: 918 },
};
const V2 = { 'accept-version': '~2' };
/** What SAPI-TS is held to: multiples of 2.1.2's rates, and a p99 bound. */
const TARGET = { getConfig: 5, notModified: 10, p99Ms: 10 };

interface Seeded {
    instances: string[];
    service: string;
}

/** A DC-like tree: application metadata and manifests, per-service and per-instance values. */
async function seed(path: string, n: number): Promise<Seeded> {
    const store = new SqliteStore({ path });
    await store.init();
    try {
        const manifest = async (name: string): Promise<string> => {
            const uuid = randomUUID();
            const template = `{"${name}": {{{${name.toUpperCase()}}}}, "dc": "{{{datacenter_name}}}", "pad": "${'x'.repeat(400)}"}`;
            await store.put('sapi_manifests', { uuid, name, path: `/opt/smartdc/${name}/etc/config.json`, template, version: '1.0.0' });
            return uuid;
        };
        const [registrar, configAgent, own] = [await manifest('registrar'), await manifest('config-agent'), await manifest('service')];
        const app = randomUUID();
        const appMetadata: Record<string, unknown> = { datacenter_name: 'us-east-1', dns_domain: 'example.com' };
        for (let k = 0; k < 60; k++) {
            appMetadata[`KEY_${k}`] = `value-${k}-${'v'.repeat(20)}`;
        }
        await store.put('sapi_applications', {
            uuid: app,
            name: 'sdc',
            owner_uuid: OWNER,
            metadata: appMetadata,
            manifests: { registrar, 'config-agent': configAgent },
        });
        const services = Array.from({ length: 20 }, () => randomUUID());
        for (const [i, s] of services.entries()) {
            await store.put('sapi_services', {
                uuid: s,
                name: `svc${i}`,
                application_uuid: app,
                type: i < 10 ? 'agent' : 'vm',
                params: { image_uuid: randomUUID() },
                metadata: { SERVICE_NAME: `svc${i}.example.com`, SERVICE_DOMAIN: `svc${i}.us-east-1.example.com` },
                manifests: { service: own },
            });
        }
        const servers = Array.from({ length: 2000 }, () => randomUUID());
        const instances = await putInstances(store, n, (i) =>
            seededInstance(i, services, { server_uuid: servers[i % 2000] }, { ADMIN_IP: `10.0.${(i >> 8) & 255}.${i & 255}` }),
        );
        return { instances, service: services[10] as string };
    } finally {
        await store.close();
    }
}

function line(what: string, r: LoadResult, v212: number, target: number | null, ceiling?: LoadResult): string {
    const ratio = r.rps / v212;
    const verdict =
        target === null
            ? ''
            : ratio >= target && r.p99 < TARGET.p99Ms
              ? `  (target ≥${target}x, p99 < ${TARGET.p99Ms} ms: met)`
              : `  (target ≥${target}x, p99 < ${TARGET.p99Ms} ms: NOT met)`;
    return (
        `${what.padEnd(30)} ${fmt(r.rps, 0).padStart(6)} req/s  p50 ${fmt(r.p50, 2)} ms  p99 ${fmt(r.p99, 2)} ms  errors ${r.errors}` +
        `   | 2.1.2: ${v212} req/s → ${fmt(ratio, 2)}x${verdict}` +
        (ceiling
            ? `\n    ceiling (same client, trivial server, same answer size): ${fmt(ceiling.rps, 0)} req/s → SAPI at ${fmt((100 * r.rps) / ceiling.rps, 0)}% of it`
            : '')
    );
}

export async function benchCore(seconds = 10, n = Number(process.env.BENCH_CONFIG_INSTANCES ?? 200_000)): Promise<string[]> {
    const V212: { getConfig: number; notModified: number } = V212_BY_N[n] ?? { getConfig: 744, notModified: 918 };
    const notes: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-'));
    const port = 18000 + Math.floor(Math.random() * 1000);
    const t0 = performance.now();
    const seeded = await seed(join(dir, 'sapi.sqlite'), n);
    console.log(`seeded ${n} instances in ${fmt((performance.now() - t0) / 1000)} s`);
    writeConfig(join(dir, 'config.json'), port, join(dir, 'sapi.sqlite'));
    const srv = await startServer(join(dir, 'config.json'), port);
    try {
        const path = (i: number): string => `/configs/${seeded.instances[i % n]}`;
        // Warm-up (JIT, SQLite page cache) on instances the measured runs do not fetch first.
        await load(32, { seconds: 1 }, (i) => request(srv.url, 'GET', path(n - 1 - (i % 1000)), undefined, V2));
        const bytes = Buffer.byteLength((await request(srv.url, 'GET', path(n - 1), undefined, V2)).body);

        // First fetches: each request a different instance, its tag kept for the polls.
        const tags: string[] = [];
        const first = await load(32, { seconds }, async (i) => {
            const r = await request(srv.url, 'GET', path(i), undefined, V2);
            tags[i] = String(r.headers.etag);
            return r;
        });
        const fetched = Math.min(tags.length, n);
        const ceil200 = await ceiling(seconds, bytes, 200);
        const l1 = line('GetConfig 200 first fetch c=32', first, V212.getConfig, TARGET.getConfig, ceil200) + `  (${fetched} instances)`;
        console.log(l1);

        const again = await load(32, { seconds }, (i) => request(srv.url, 'GET', path(i % Math.min(1000, fetched)), undefined, V2));
        const l2 = line('GetConfig 200 again c=32', again, V212.getConfig, TARGET.getConfig, ceil200);
        console.log(l2);

        const polls = await load(
            32,
            { seconds },
            (i) => request(srv.url, 'GET', path(i % fetched), undefined, { ...V2, 'if-none-match': tags[i % fetched] as string }),
            (r) => r.status === 304,
        );
        const ceil304 = await ceiling(seconds, 0, 304);
        const l3 = line('GetConfig 304 c=32', polls, V212.notModified, TARGET.notModified, ceil304) + `  (polls over ${fetched} instances)`;
        console.log(l3);
        console.log(`server RSS after the GetConfig runs: ${fmt(rss(srv.pid).rss)} MiB`);
        notes.push(`N=${n}: ${l1}`, `N=${n}: ${l2}`, `N=${n}: ${l3}`);
    } finally {
        await srv.stop();
        rmSync(dir, { recursive: true, force: true });
    }
    return notes;
}

/** The GetConfig load against the trivial server answering `bytes` bytes (or 304s). */
async function ceiling(seconds: number, bytes: number, status: number): Promise<LoadResult> {
    const srv = await startCeiling(17000 + Math.floor(Math.random() * 1000), bytes, status);
    try {
        const path = `/configs/${randomUUID()}`;
        const headers = status === 304 ? { ...V2, 'if-none-match': '"0123456789abcdef0123"' } : V2;
        return await load(32, { seconds }, () => request(srv.url, 'GET', path, undefined, headers));
    } finally {
        await srv.stop();
    }
}
