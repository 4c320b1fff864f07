// The upgrade from SAPI 2.1.2 as an operator meets it: N instances in
// 2.1.2's shape in its version-0 buckets on the Moray test server (its own
// process), then SAPI-TS started on it in full mode (its own process, as
// `sdcadm update sapi` leaves it). While the buckets are upgraded (backfill,
// reindex, sweep: /ping's storUpgrade), a search by server_uuid is made
// every BENCH_UPGRADE_SEARCH_MS (default 500 ms), one at a time; each is
// timed and checked against the instances seeded on that server. Prints the
// upgrade's time (SAPI's start to /ping without storUpgrade), and the
// searches: how many, how many exact, and their latency before and after
// the local cache first answered one (median, max). Indicative: the Moray
// test server is in memory, not PostgreSQL.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { connectMoray } from '../lib/stor/moray/client.js';
import { onServerCount, seedLegacy } from './backfill.js';
import { morayServerConfig, startMoray } from './getconfig-moray.js';
import { fmt, request, startServer } from './lib.js';

interface Search {
    at: number;
    ms: number;
    exact: boolean;
}

function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? NaN : (s[Math.floor(s.length / 2)] as number);
}

export async function benchUpgradeSearch(n: number): Promise<void> {
    const every = Number(process.env.BENCH_UPGRADE_SEARCH_MS ?? 500);
    const moray = await startMoray();
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-upgrade-'));
    try {
        const raw = await connectMoray({ host: '127.0.0.1', port: moray.port });
        const servers = await seedLegacy(raw, n);
        await raw.close();
        const port = 20000 + Math.floor(Math.random() * 20000);
        const t0 = performance.now();
        const srv = await startServer(morayServerConfig(dir, port, moray.port), port);
        const secs = (): number => (performance.now() - t0) / 1000;
        const searches: Search[] = [];
        let done = NaN;
        try {
            for (let k = 0; ; k++) {
                const ping = await request(srv.url, 'GET', '/ping');
                const upgrading = ping.status !== 200 || (JSON.parse(ping.body) as { storUpgrade?: unknown }).storUpgrade !== undefined;
                if (!upgrading) {
                    done = secs();
                    break;
                }
                const i = k % servers.length;
                const s0 = performance.now();
                const r = await request(srv.url, 'GET', `/instances?server_uuid=${servers[i] as string}`, undefined, { 'accept-version': '~2' });
                const ms = performance.now() - s0;
                const got = r.status === 200 ? (JSON.parse(r.body) as unknown[]).length : -1;
                searches.push({ at: secs(), ms, exact: r.status === 200 && got === onServerCount(n, servers.length, i) });
                await new Promise((res) => setTimeout(res, Math.max(0, every - ms)));
            }
        } finally {
            await srv.stop();
        }
        // The local cache answers once its first copy is made: searches then take milliseconds, not a scan.
        const firstFast = searches.findIndex((s) => s.ms < 1000);
        const slow = firstFast < 0 ? searches : searches.slice(0, firstFast);
        const fast = firstFast < 0 ? [] : searches.slice(firstFast);
        const exact = searches.filter((s) => s.exact).length;
        console.log(`  ${n.toLocaleString('en-US')} instances, SAPI-TS in its own process: upgrade ${fmt(done, 1)} s after the start`);
        console.log(`  searches by server_uuid during it: ${searches.length}, ${exact} exact`);
        if (slow.length > 0) {
            console.log(
                `    before the local cache answered: ${slow.length}, median ${fmt(median(slow.map((s) => s.ms)), 0)} ms, max ${fmt(Math.max(...slow.map((s) => s.ms)), 0)} ms`,
            );
        }
        if (fast.length > 0) {
            console.log(
                `    from ${fmt(fast[0]?.at ?? NaN, 1)} s on: ${fast.length}, median ${fmt(median(fast.map((s) => s.ms)), 1)} ms, max ${fmt(Math.max(...fast.map((s) => s.ms)), 1)} ms (target: ≤ 1 s, exact)`,
            );
        }
    } finally {
        moray.proc.kill();
        rmSync(dir, { recursive: true, force: true });
    }
}

// Run alone: node dist/bench/upgrade-search.js [N] (default 100,000).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
    await benchUpgradeSearch(Number(process.argv[2] ?? 100_000));
}
