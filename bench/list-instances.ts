// Instance search at DC scale: indexed filters and paging versus the
// 2.1.2 way (load every instance, filter client-side).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SqliteStore } from '../lib/stor/sqlite/index.js';
import { MorayStore } from '../lib/stor/moray/index.js';
import type { Store } from '../lib/stor/store.js';
import { startFakeMoray } from '../test/lib/fake-moray.js';
import { fmt, load, putInstances, request, resetPeak, rss, seededInstance, startServer, writeConfig } from './lib.js';

const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';

export interface Seeded {
    servers: string[];
    services: string[];
    images: string[];
}

/** Seed `n` instances straight into a store (the API path is measured elsewhere). */
export async function seed(store: Store, n: number, batchSize = 5000): Promise<Seeded> {
    const app = randomUUID();
    const servers = Array.from({ length: 2000 }, () => randomUUID());
    const services = Array.from({ length: 20 }, () => randomUUID());
    const images = Array.from({ length: 10 }, () => randomUUID());
    await store.put('sapi_applications', { uuid: app, name: 'sdc', owner_uuid: OWNER });
    for (const [i, s] of services.entries()) {
        await store.put('sapi_services', { uuid: s, name: `svc${i}`, application_uuid: app, type: i < 10 ? 'agent' : 'vm' });
    }
    await putInstances(store, n, (i) => seededInstance(i, services, { server_uuid: servers[i % 2000], image_uuid: images[(i >> 3) % 10] }), batchSize);
    return { servers, services, images };
}

export async function benchListInstances(n = 200_000, backend: 'sqlite' | 'moray' = 'sqlite'): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-list-'));
    const storePath = join(dir, 'sapi.sqlite');
    const t0 = performance.now();
    let extra: Record<string, unknown> = { log_level: 'info' };
    let seeded: Seeded;
    const moray = backend === 'moray' ? await startFakeMoray() : null;
    if (moray) {
        const store = new MorayStore({ connect: { host: moray.host, port: moray.port } });
        await store.init();
        seeded = await seed(store, n, 1000);
        await store.close();
        extra = { ...extra, mode: 'full', store: { backend: 'moray', path: storePath }, moray: { host: moray.host, port: moray.port } };
    } else {
        const store = new SqliteStore({ path: storePath });
        await store.init();
        seeded = await seed(store, n);
        await store.close();
    }
    console.log(`[${backend}] seeded ${n} instances in ${fmt((performance.now() - t0) / 1000)} s`);

    const port = 19000 + Math.floor(Math.random() * 1000);
    writeConfig(join(dir, 'config.json'), port, storePath, extra);
    const srv = await startServer(join(dir, 'config.json'), port);
    const v2 = { 'accept-version': '~2' };
    try {
        const byServer = await load(1, { total: 400 }, (i) =>
            request(srv.url, 'GET', `/instances?server_uuid=${seeded.servers[(i * 7) % 2000]}`, undefined, v2),
        );
        // (service, image) pairs that exist: those of seeded instance j.
        const pairPath = (i: number, limit: number): string => {
            const j = (i * 7919) % n;
            return `/instances?service_uuid=${seeded.services[j % 20]}&image_uuid=${seeded.images[(j >> 3) % 10]}&limit=${limit}`;
        };
        const bySvcImg = await load(1, { total: 400 }, (i) => request(srv.url, 'GET', pairPath(i, 1000), undefined, v2));
        const bySvcImg100 = await load(1, { total: 400 }, (i) => request(srv.url, 'GET', pairPath(i, 100), undefined, v2));
        const returned = (JSON.parse((await request(srv.url, 'GET', pairPath(1, 1000), undefined, v2)).body) as unknown[]).length;
        console.log(`[${backend}] latency, one request at a time:`);
        console.log(
            `[${backend}] GET /instances?server_uuid=X                      p50 ${fmt(byServer.p50, 2)} ms  p99 ${fmt(byServer.p99, 2)} ms  (${byServer.errors} errors)`,
        );
        console.log(
            `[${backend}] GET /instances?service_uuid=S&image_uuid=I&limit=1000  p50 ${fmt(bySvcImg.p50, 2)} ms  p99 ${fmt(bySvcImg.p99, 2)} ms  (${bySvcImg.errors} errors, ${returned} instances per answer)`,
        );
        console.log(
            `[${backend}] GET /instances?service_uuid=S&image_uuid=I&limit=100   p50 ${fmt(bySvcImg100.p50, 2)} ms  p99 ${fmt(bySvcImg100.p99, 2)} ms  (${bySvcImg100.errors} errors)`,
        );

        // The 2.1.2 way: the whole list, filtered by the client.
        const before = rss(srv.pid);
        resetPeak(srv.pid);
        const target = seeded.servers[0];
        const t1 = performance.now();
        const full = await request(srv.url, 'GET', '/instances', undefined, v2);
        const all = JSON.parse(full.body) as { params?: { server_uuid?: string } }[];
        const mine = all.filter((x) => x.params?.server_uuid === target);
        const fullMs = performance.now() - t1;
        const after = rss(srv.pid);
        console.log(
            `[${backend}] full unpaged list (${all.length} instances, ${fmt(full.body.length / 1048576)} MiB) + client filter (${mine.length} on server): ${fmt(fullMs, 0)} ms`,
        );
        console.log(`  ratio full-list / indexed p50: ${fmt(fullMs / byServer.p50, 0)}x   (2.1.2: ~21,000 ms at 200,000 → ${fmt(21000 / byServer.p50, 0)}x)`);
        console.log(
            `  server RSS during the unpaged list: ${fmt(before.rss)} MiB before, peak ${fmt(after.hwm)} MiB → growth ${fmt(after.hwm - before.rss)} MiB (target < 64; 2.1.2 ~700 MiB peak)`,
        );
    } finally {
        await srv.stop();
        await moray?.close();
        rmSync(dir, { recursive: true, force: true });
    }
}
