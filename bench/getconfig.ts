// GetConfig throughput (concurrency 32) and CreateInstance rate
// (concurrency 16) against a server in its own process.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { fmt, load, request, startServer, writeConfig } from './lib.js';

const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';

export async function benchCore(seconds = 10): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-'));
    const port = 18000 + Math.floor(Math.random() * 1000);
    writeConfig(join(dir, 'config.json'), port, join(dir, 'sapi.sqlite'));
    const srv = await startServer(join(dir, 'config.json'), port);
    try {
        const j = (r: { body: string }): { uuid: string } => JSON.parse(r.body) as { uuid: string };
        const m1 = j(await request(srv.url, 'POST', '/manifests', { name: 'a', path: '/etc/a', template: '{{A}}' }));
        const m2 = j(await request(srv.url, 'POST', '/manifests', { name: 'b', path: '/etc/b', template: '{{B}}' }));
        const app = j(
            await request(srv.url, 'POST', '/applications', {
                name: 'sdc',
                owner_uuid: OWNER,
                metadata: { datacenter_name: 'us-east-1', dns_domain: 'example.com' },
                manifests: { a: m1.uuid },
            }),
        );
        const svc = j(
            await request(srv.url, 'POST', '/services', {
                name: 'vmapi',
                application_uuid: app.uuid,
                params: { image_uuid: '2b3f4a8e-2b48-4b5e-9d6a-0f1e2d3c4b5a', ram: 1024 },
                metadata: { SERVICE_NAME: 'vmapi.example.com' },
                manifests: { b: m2.uuid },
            }),
        );
        const insts: string[] = [];
        for (let i = 0; i < 100; i++) {
            insts.push(j(await request(srv.url, 'POST', '/instances', { service_uuid: svc.uuid, metadata: { N: i } })).uuid);
        }
        await load(32, { seconds: 1 }, (i) => request(srv.url, 'GET', `/configs/${insts[i % insts.length]}`));

        const gc = await load(32, { seconds }, (i) => request(srv.url, 'GET', `/configs/${insts[i % insts.length]}`));
        console.log(
            `GetConfig      c=32  ${fmt(gc.rps, 0).padStart(6)} req/s  p50 ${fmt(gc.p50, 2)} ms  p99 ${fmt(gc.p99, 2)} ms  errors ${gc.errors}` +
                `   | 2.1.2: ~1600 req/s p99 ~40 ms  → ${fmt(gc.rps / 1600, 2)}x`,
        );
        const cr = await load(16, { seconds }, () => request(srv.url, 'POST', '/instances', { service_uuid: svc.uuid }));
        console.log(
            `CreateInstance c=16  ${fmt(cr.rps, 0).padStart(6)} req/s  p50 ${fmt(cr.p50, 2)} ms  p99 ${fmt(cr.p99, 2)} ms  errors ${cr.errors}` +
                `   | 2.1.2: ~1300 req/s            → ${fmt(cr.rps / 1300, 2)}x`,
        );
    } finally {
        await srv.stop();
        rmSync(dir, { recursive: true, force: true });
    }
}
