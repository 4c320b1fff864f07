// The upgrade of SAPI 2.1.2's instance bucket on Moray: N instances in
// 2.1.2's shape (server and image only inside params) in version-0 buckets,
// then SAPI-TS's bucket setup: updateBucket, reindexObjects until done, and
// the backfill that writes the top-level copies. Prints rows per second of
// the backfill and what 200,000 instances would take at that rate.
//
// Runs against the Moray test server of test/lib (in memory, in this
// process, scan-based): the figure is this code's overhead per row plus that
// server's, not what PostgreSQL behind a real Moray would do.

import { randomUUID } from 'node:crypto';

import { BUCKETS } from '../lib/stor/buckets.js';
import { connectMoray } from '../lib/stor/moray/client.js';
import { MorayStore } from '../lib/stor/moray/index.js';
import { startFakeMoray } from '../test/lib/fake-moray.js';

/** SAPI 2.1.2's bucket configs (createBucket without options: version 0). */
const LEGACY: Record<string, Record<string, { type: 'string'; unique?: boolean }>> = {
    sapi_applications: { uuid: { type: 'string', unique: true } },
    sapi_services: { uuid: { type: 'string', unique: true }, name: { type: 'string' }, application_uuid: { type: 'string' }, type: { type: 'string' } },
    sapi_instances: { uuid: { type: 'string', unique: true }, service_uuid: { type: 'string' }, type: { type: 'string' } },
    sapi_manifests: { uuid: { type: 'string', unique: true } },
};

export async function benchBackfill(n: number): Promise<void> {
    const fake = await startFakeMoray();
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    try {
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

        const store = new MorayStore({ client: raw, reindexBatchSize: 100, backfillBatchSize: Number(process.env.BENCH_BACKFILL_BATCH ?? 500) });
        const t0 = process.hrtime.bigint();
        await store.init();
        await store.initializer?.reindexDone();
        const total = Number(process.hrtime.bigint() - t0) / 1e9;
        const st = store.initializer?.status()[BUCKETS.instances.name];
        const rate = st?.backfill?.rate ?? 0;
        const rewritten = st?.backfill?.rewritten ?? 0;
        console.log(
            `  ${n.toLocaleString('en-US')} instances: bucket setup + reindex + backfill ${total.toFixed(1)} s; ` +
                `backfill ${rate.toLocaleString('en-US')} rows/s (${rewritten.toLocaleString('en-US')} rewritten)`,
        );
        if (rate > 0) {
            console.log(
                `  200,000 instances at that rate: ${(200_000 / rate).toFixed(0)} s of backfill (2.1.2: no backfill; its searches by server or image load every instance)`,
            );
        }
        await store.close();
    } finally {
        await raw.close();
        await fake.close();
    }
}
