// The upgrade of SAPI 2.1.2's instance bucket on Moray: N instances in
// 2.1.2's shape (server and image only inside params) in version-0 buckets,
// then SAPI-TS's bucket setup: updateBucket, the backfill that writes the
// top-level copies (pipelined batches), Moray's reindexObjects for what it
// left, and the catch-up sweep. Prints the whole upgrade's time, each
// phase's, rows per second, how many writes each row got (the backfill's
// puts and the rows reindexObjects processed), and, unless
// BENCH_BACKFILL_SEARCH=0, how long a search by server_uuid made during the
// backfill took (exact: answered client-side until the upgrade is done).
//
// Runs against the Moray test server of test/lib (in memory, in this
// process, with sorted indexes): the figure is this code's overhead per row
// plus that server's, not what PostgreSQL behind a real Moray would do.
// BENCH_BACKFILL_BATCH and BENCH_BACKFILL_DEPTH set the rows per batch and
// the batches in flight.

import { randomUUID } from 'node:crypto';

import { BUCKETS } from '../lib/stor/buckets.js';
import { connectMoray, type MorayClient } from '../lib/stor/moray/client.js';
import { MorayStore } from '../lib/stor/moray/index.js';
import { eq } from '../lib/stor/store.js';
import { startFakeMoray } from '../test/lib/fake-moray.js';

/** SAPI 2.1.2's bucket configs (createBucket without options: version 0). */
const LEGACY: Record<string, Record<string, { type: 'string'; unique?: boolean }>> = {
    sapi_applications: { uuid: { type: 'string', unique: true } },
    sapi_services: { uuid: { type: 'string', unique: true }, name: { type: 'string' }, application_uuid: { type: 'string' }, type: { type: 'string' } },
    sapi_instances: { uuid: { type: 'string', unique: true }, service_uuid: { type: 'string' }, type: { type: 'string' } },
    sapi_manifests: { uuid: { type: 'string', unique: true } },
};

/**
 * SAPI 2.1.2's buckets and `n` of its instances in `raw`'s Moray, on
 * ceil(n / 15) servers (instance j on server j mod that): the servers.
 */
export async function seedLegacy(raw: MorayClient, n: number): Promise<string[]> {
    for (const [name, index] of Object.entries(LEGACY)) {
        await raw.createBucket(name, { index });
    }
    const servers = Array.from({ length: Math.max(1, Math.ceil(n / 15)) }, () => randomUUID());
    const images = Array.from({ length: 20 }, () => randomUUID());
    const services = Array.from({ length: 30 }, () => randomUUID());
    for (let i = 0; i < n; i += 500) {
        const reqs = [];
        for (let j = i; j < Math.min(n, i + 500); j++) {
            const uuid = randomUUID();
            reqs.push({
                operation: 'put' as const,
                bucket: 'sapi_instances',
                key: uuid,
                value: {
                    uuid,
                    service_uuid: services[j % services.length] as string,
                    type: 'agent',
                    params: { server_uuid: servers[j % servers.length] as string, image_uuid: images[j % images.length] as string },
                    exists: true,
                },
            });
        }
        await raw.batch(reqs);
    }
    return servers;
}

/** How many of `n` seeded instances are on servers[k] (see seedLegacy). */
export function onServerCount(n: number, servers: number, k: number): number {
    return Array.from({ length: n }, (_, j) => j).filter((j) => j % servers === k % servers).length;
}

export async function benchBackfill(n: number): Promise<void> {
    const fake = await startFakeMoray();
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    try {
        const servers = await seedLegacy(raw, n);

        const store = new MorayStore({
            client: raw,
            ...(process.env.BENCH_BACKFILL_BATCH ? { backfillBatchSize: Number(process.env.BENCH_BACKFILL_BATCH) } : {}),
            ...(process.env.BENCH_BACKFILL_DEPTH ? { backfillDepth: Number(process.env.BENCH_BACKFILL_DEPTH) } : {}),
        });
        const before = fake.requests.length;
        const t0 = process.hrtime.bigint();
        const secs = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
        /** When the instances bucket entered each phase. */
        const phases: [string, number][] = [['setup', 0]];
        const watch = setInterval(() => {
            const known = store.initializer?.status()[BUCKETS.instances.name]?.phase ?? 'unknown';
            // Before the first phase is known, the buckets are being set up (updateBucket).
            const phase = known === 'unknown' ? 'setup' : known;
            if (phases.at(-1)?.[0] !== phase) {
                phases.push([phase, secs()]);
            }
        }, 50);
        const server = servers[7 % servers.length] as string;
        const want = onServerCount(n, servers.length, 7);
        let search: Promise<string> | null = null;
        if (process.env.BENCH_BACKFILL_SEARCH !== '0') {
            search = (async () => {
                while (store.initializer?.status()[BUCKETS.instances.name]?.phase !== 'backfilling') {
                    await new Promise((r) => setTimeout(r, 20));
                }
                const s0 = secs();
                const found = await store.find(BUCKETS.instances.name, eq('server_uuid', server), { limit: 1000 });
                const took = secs() - s0;
                const exact = found.items.length === want && found.total === want ? 'exact' : `NOT exact (${found.items.length} of ${want})`;
                return `a search by server_uuid during the backfill (at ${s0.toFixed(1)} s): ${(took * 1000).toFixed(0)} ms, ${exact}`;
            })();
        }
        await store.init();
        await store.initializer?.reindexDone();
        const total = secs();
        clearInterval(watch);
        const st = store.initializer?.status()[BUCKETS.instances.name];
        const rate = st?.backfill?.rate ?? 0;
        const rewritten = st?.backfill?.rewritten ?? 0;
        // Writes of instance rows during the upgrade: the puts the backfill (and sweeps) sent, and the rows Moray's reindex rewrote.
        let puts = 0;
        for (const r of fake.requests.slice(before)) {
            if (r.method === 'batch') {
                puts += (r.args[0] as { bucket?: string; operation?: string }[]).filter(
                    (q) => q.bucket === 'sapi_instances' && (q.operation ?? 'put') === 'put',
                ).length;
            } else if (r.method === 'putObject' && r.args[0] === 'sapi_instances') {
                puts++;
            }
        }
        const reindexed = st?.reindexed ?? 0;
        phases.push(['done', total]);
        const spans = phases.slice(0, -1).map(([p, t], i) => `${p} ${((phases[i + 1]?.[1] ?? total) - t).toFixed(1)} s`);
        console.log(
            `  ${n.toLocaleString('en-US')} instances: upgrade ${total.toFixed(1)} s (${spans.join(', ')}); ` +
                `backfill ${rate.toLocaleString('en-US')} rows/s (${rewritten.toLocaleString('en-US')} rewritten)`,
        );
        console.log(
            `  writes per row: ${((puts + reindexed) / n).toFixed(3)} (${puts.toLocaleString('en-US')} puts by SAPI-TS, ${reindexed.toLocaleString('en-US')} rows by reindexObjects)`,
        );
        if (search) {
            console.log(`  ${await search}`);
        }
        await store.close();
    } finally {
        await raw.close();
        await fake.close();
    }
}
