// SAPI-TS on Moray, the table SAPI 2.1.2 was measured with: one black-box
// client (bench/lib.ts: HTTP/1.1 keep-alive, in this process), SAPI in its
// own process in full mode on Moray, 20 services (ten of type agent) and
// 10,000 instances (bench/getconfig-moray.ts's tree, written straight into
// Moray). Each figure is printed beside 2.1.2's (measured with this client
// on a real Moray: moray-server 2.5.0 on PostgreSQL 15, on a 2-core machine)
// and beside the ceiling: the same load against a trivial Node server
// answering as many bytes (bench/ceiling.ts), measured in the same run.
//
// The Moray is 127.0.0.1:$MORAY_PORT when that is set (a real Moray; its
// SAPI buckets must be empty, or BENCH_MORAY_RESET=1 deletes them first),
// else the Moray test server in its own process (in memory, with indexes
// shaped like PostgreSQL's but not its costs: the figures are indicative).
//
// In this order, on the one server:
//   - GetConfig at concurrency 32, each request a different instance and the
//     first GetConfig of it (all 10,000);
//   - GetConfig answered 304 (If-None-Match with the tag just answered), c=32;
//   - GET /instances?service_uuid=X (500 items), GET /instances (10,000) and
//     GET /instances?server_uuid=X (5; 2.1.2 has no such filter, so its
//     figure is a full list filtered by the client): the median of single
//     requests one after another (`Accept-Version: ~2`, so every type);
//   - CreateInstance at concurrency 16: record-only agent registrations, as
//     an agent's postinstall sends them (no Accept-Version, a service of type
//     agent, params.server_uuid a new server each time): in full mode these
//     only record, like 2.1.2's.
// Beside each figure: the CPU SAPI's process (and the Moray test server's)
// used per request while it was taken, background work (the change feed's
// polls) included; /proc counts in 10 ms ticks, so for the lists (20
// requests) it is coarse.

import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { connectMoray } from '../lib/stor/moray/client.js';
import { ceilingLoad, startCeiling } from './ceiling.js';
import { createBody, type CreateWorld } from './create.js';
import { morayServerConfig, seedMoray, startMoray, tree, type Tree } from './getconfig-moray.js';
import { cpuSeconds, fmt, load, request, startServer, type ChildServer, type LoadResult, type Reply } from './lib.js';

const V2 = { 'accept-version': '~2' };

/** One row of the table: how to load SAPI (and the ceiling the same way), and 2.1.2's figure. */
interface Row {
    what: string;
    /** A rate (requests/s, higher is better) or a latency (median ms, lower is better). */
    kind: 'rate' | 'latency';
    v212: { rps?: number; p50: number };
    /** The target, as a multiple of 2.1.2. */
    target?: number | undefined;
    sapi?: LoadResult;
    ceiling?: LoadResult;
    /** CPU per request of SAPI's process and the Moray test server's (µs), while SAPI's figure was taken. */
    cpu?: { sapi: number; moray: number } | undefined;
    /** The 1-minute load average when SAPI's figure was taken. */
    load?: number | undefined;
    note?: string | undefined;
}

function rowFigure(r: Row, x: LoadResult | undefined): string {
    if (!x) {
        return '—';
    }
    const errors = x.errors > 0 ? ` (${x.errors} errors)` : '';
    return r.kind === 'rate' ? `${fmt(x.rps, 0)}/s, p50 ${fmt(x.p50, 1)} ms${errors}` : `${fmt(x.p50, 1)} ms${errors}`;
}

function cpuFigure(r: Row): string {
    return r.cpu ? `CPU per request: SAPI ${fmt(r.cpu.sapi, 0)} µs${r.cpu.moray > 0 ? `, Moray test server ${fmt(r.cpu.moray, 0)} µs` : ''}; ` : '';
}

function v212Figure(r: Row): string {
    return r.kind === 'rate' ? `${r.v212.rps ?? 0}/s${r.v212.p50 ? `, p50 ${r.v212.p50} ms` : ''}` : `${r.v212.p50} ms`;
}

/** SAPI-TS against 2.1.2: rate over rate, or 2.1.2's latency over SAPI-TS's (higher is better either way). */
function ratio(r: Row): number {
    if (!r.sapi) {
        return 0;
    }
    return r.kind === 'rate' ? r.sapi.rps / (r.v212.rps ?? 1) : r.v212.p50 / Math.max(r.sapi.p50, 0.001);
}

function tableLines(rows: Row[]): string[] {
    const lines = [
        '| on Moray | SAPI 2.1.2 | SAPI-TS | ratio | target | ceiling (trivial server) | CPU per request | load avg |',
        '|---|---|---|---|---|---|---|---|',
    ];
    for (const r of rows) {
        const x = ratio(r);
        const target = r.target === undefined ? '—' : `≥${r.target}×: ${x >= r.target ? 'met' : 'NOT met'}`;
        lines.push(
            `| ${r.what}${r.note ? ` (${r.note})` : ''} | ${v212Figure(r)} | ${rowFigure(r, r.sapi)} | ${fmt(x, 2)}× | ${target} | ${rowFigure(r, r.ceiling)} | ${cpuFigure(r).replace(/^CPU per request: |; $/g, '')} | ${fmt(r.load ?? 0, 2)} |`,
        );
    }
    return lines;
}

/** `reps` single GETs (`Accept-Version: ~2`) one after another: their p50 is the median. */
function median(url: string, path: string, reps: number): Promise<LoadResult> {
    return load(1, { total: reps }, () => request(url, 'GET', path, undefined, V2));
}

function items(r: Reply): number {
    try {
        const v = JSON.parse(r.body) as unknown;
        return Array.isArray(v) ? v.length : -1;
    } catch {
        return -1;
    }
}

/** The Moray to use: $MORAY_PORT's (checked empty, or emptied with BENCH_MORAY_RESET=1), or a fresh test server. */
async function chooseMoray(): Promise<{ port: number; real: boolean; pid: number; stop(): void }> {
    const given = process.env.MORAY_PORT;
    if (given === undefined || given === '') {
        const m = await startMoray();
        return { port: m.port, real: false, pid: m.proc.pid ?? 0, stop: () => m.proc.kill('SIGTERM') };
    }
    const port = Number(given);
    const client = await connectMoray({ host: '127.0.0.1', port });
    try {
        const sapi = (await client.listBuckets()).filter((b) => b.startsWith('sapi_'));
        if (sapi.length > 0) {
            if (process.env.BENCH_MORAY_RESET !== '1') {
                throw new Error(`the Moray at 127.0.0.1:${port} has SAPI buckets (${sapi.join(', ')}): set BENCH_MORAY_RESET=1 to delete them first`);
            }
            for (const b of sapi) {
                await client.deleteBucket(b);
            }
        }
    } finally {
        await client.close();
    }
    return { port, real: true, pid: 0, stop: () => undefined };
}

/** Waits until /ping shows no bucket upgrade under way (at most `seconds`). */
async function settled(url: string, seconds: number): Promise<void> {
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) {
        const r = await request(url, 'GET', '/ping').catch(() => null);
        if (r?.status === 200 && !('storUpgrade' in (JSON.parse(r.body) as object))) {
            return;
        }
        await new Promise((res) => setTimeout(res, 200));
    }
}

/** The same load against the trivial server, answering `bytes` bytes with `status`. */
async function ceiling(bytes: number, status: number, run: (url: string) => Promise<LoadResult>): Promise<LoadResult> {
    const srv = await startCeiling(17000 + Math.floor(Math.random() * 1000), bytes, status);
    try {
        return await run(srv.url);
    } finally {
        await srv.stop();
    }
}

/** Runs the table's client against SAPI-TS on Moray; prints the table and returns it (for the summary). */
export async function benchMoray(opts: { instances?: number; creates?: number; seconds?: number; reps?: number } = {}): Promise<string[]> {
    const n = opts.instances ?? 10_000;
    const creates = opts.creates ?? 3000;
    const seconds = opts.seconds ?? 5;
    const reps = opts.reps ?? 20;
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bench-moray-table-'));
    const moray = await chooseMoray();
    const where = moray.real ? `real Moray at 127.0.0.1:${moray.port}` : 'indicative: Moray test server, in memory';
    let srv: ChildServer | undefined;
    try {
        const t: Tree = tree(n);
        const t0 = performance.now();
        await seedMoray(moray.port, t);
        console.log(`[${where}] seeded ${n} instances, 20 services in ${fmt((performance.now() - t0) / 1000)} s`);

        const port = 18000 + Math.floor(Math.random() * 1000);
        srv = await startServer(morayServerConfig(dir, port, moray.port), port);
        await settled(srv.url, 120);
        const url = srv.url;
        const uuids = t.instances.map((v) => String(v.uuid));
        const services = t.puts.filter((p) => p.bucket === 'sapi_services').map((p) => p.value);
        const agents: CreateWorld = {
            services: services.filter((s) => s.type === 'agent').map((s) => String(s.uuid)),
            images: services.filter((s) => s.type === 'agent').map((s) => String((s.params as { image_uuid: string }).image_uuid)),
        };
        const server0 = String((t.instances[0]?.params as { server_uuid: string }).server_uuid);
        const service0 = String(services[0]?.uuid);

        // GetConfig: each request a different instance, the first GetConfig of each.
        const tags: string[] = [];
        const configBytes: number[] = [];
        const pids = [srv.pid, moray.pid];
        const cpuNow = (): number[] => pids.map((p) => (p > 0 ? cpuSeconds(p) : 0));
        /** Runs `run` as `row`'s SAPI figure (with the CPU both processes used and the load average), printed as it is taken. */
        const measured = async (row: Row, run: () => Promise<LoadResult>): Promise<Row> => {
            const before = cpuNow();
            const x = await run();
            const after = cpuNow();
            const per = (k: number): number => (((after[k] ?? 0) - (before[k] ?? 0)) / Math.max(1, x.requests)) * 1e6;
            const r: Row = { ...row, sapi: x, cpu: { sapi: per(0), moray: per(1) }, load: loadavg()[0] };
            console.log(`  ${r.what}: ${rowFigure(r, r.sapi)} (${cpuFigure(r)}load average ${fmt(r.load ?? 0, 2)})`);
            return r;
        };
        const firstRow = await measured(
            { what: `GetConfig, concurrency 32, ${n} distinct instances`, kind: 'rate', v212: { rps: 125, p50: 257 }, target: 10 },
            () =>
                load(32, { total: n }, async (i) => {
                    const r = await request(url, 'GET', `/configs/${uuids[i] as string}`);
                    tags[i] = String(r.headers.etag);
                    configBytes[i] = Buffer.byteLength(r.body);
                    return r;
                }),
        );
        const nmRow = await measured({ what: 'GetConfig answered 304', kind: 'rate', v212: { rps: 181, p50: 0 } }, () =>
            load(
                32,
                { seconds },
                (i) => request(url, 'GET', `/configs/${uuids[i % n] as string}`, undefined, { 'if-none-match': tags[i % n] as string }),
                (r) => r.status === 304,
            ),
        );

        // Lists: the median of single requests.
        const lists: { what: string; path: string; v212: number; target?: number; expect: number; note?: string }[] = [
            { what: 'GET /instances?service_uuid=X', path: `/instances?service_uuid=${service0}`, v212: 48, target: 5, expect: Math.ceil(n / 20) },
            { what: 'GET /instances', path: '/instances', v212: 742, target: 5, expect: n },
            {
                what: 'instances on server X',
                path: `/instances?server_uuid=${server0}`,
                v212: 769,
                expect: Math.ceil(n / 2000),
                note: '2.1.2: list all, filter',
            },
        ];
        const listBytes: number[] = [];
        const listRows: Row[] = [];
        for (const l of lists) {
            const first = await request(url, 'GET', l.path, undefined, V2);
            const got = items(first);
            listBytes.push(Buffer.byteLength(first.body));
            const note = got === l.expect ? l.note : `expected ${l.expect}${l.note ? `; ${l.note}` : ''}`;
            const times = l.what === 'GET /instances' ? Math.max(5, Math.floor(reps / 3)) : reps;
            listRows.push(
                await measured({ what: `${l.what} (${got} items)`, kind: 'latency', v212: { p50: l.v212 }, target: l.target, note }, () =>
                    median(url, l.path, times),
                ),
            );
        }

        // Record-only agent registrations (no Accept-Version), a new server each.
        const createOne = (i: number): Promise<Reply> => request(url, 'POST', '/instances', createBody(agents, i));
        const sample = await createOne(creates);
        if (sample.status !== 200) {
            throw new Error(`CreateInstance: ${sample.status} ${sample.body}`);
        }
        const createRow = await measured({ what: 'CreateInstance, concurrency 16', kind: 'rate', v212: { rps: 247, p50: 63 }, target: 2 }, () =>
            load(16, { total: creates }, createOne),
        );
        await srv.stop();
        srv = undefined;

        // The ceilings, with SAPI stopped.
        createRow.ceiling = await ceiling(Buffer.byteLength(sample.body), 200, (u) =>
            ceilingLoad(u, 16, { total: creates }, (i) => ({ method: 'POST', path: '/instances', body: createBody(agents, i) })),
        );
        const configSize = configBytes.sort((a, b) => a - b)[Math.floor(configBytes.length / 2)] ?? 0;
        firstRow.ceiling = await ceiling(configSize, 200, (u) =>
            ceilingLoad(u, 32, { total: n }, (i) => ({ method: 'GET', path: `/configs/${uuids[i] as string}` })),
        );
        nmRow.ceiling = await ceiling(0, 304, (u) =>
            ceilingLoad(u, 32, { seconds }, (i) => ({
                method: 'GET',
                path: `/configs/${uuids[i % n] as string}`,
                headers: { 'if-none-match': tags[i % n] as string },
            })),
        );
        for (const [k, r] of listRows.entries()) {
            const path = lists[k]?.path ?? '/';
            r.ceiling = await ceiling(listBytes[k] ?? 0, 200, (u) => median(u, path, reps));
        }

        const rows = [createRow, firstRow, nmRow, ...listRows];
        const out = [`SAPI-TS on Moray (${where}), full mode, 20 services, ${n} instances, ${creates} creates:`, ...tableLines(rows)];
        console.log(out.join('\n'));
        return out;
    } finally {
        await srv?.stop();
        moray.stop();
        rmSync(dir, { recursive: true, force: true });
    }
}

// Run alone: node dist/bench/moray.js (BENCH_MORAY_INSTANCES, BENCH_MORAY_CREATES, BENCH_MORAY_SECONDS).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
    await benchMoray({
        instances: Number(process.env.BENCH_MORAY_INSTANCES ?? 10_000),
        creates: Number(process.env.BENCH_MORAY_CREATES ?? 3000),
        seconds: Number(process.env.BENCH_MORAY_SECONDS ?? 5),
    });
}
