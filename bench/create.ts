// CreateInstance as the external comparison measured it: one black-box
// client over HTTP/1.1 keep-alive, `Accept-Version: ~2`, concurrency 16,
// against a server in its own process on a fresh embedded store.
//
// The store holds one application and 20 services, 10 of type vm and 10 of
// type agent, set up through the API. The server runs as it starts by
// default: proto mode, where a create records the instance and deploys
// nothing (in full mode a create is a VMAPI provision or a CNAPI install,
// whose rate is theirs, not SAPI's). Each request creates one instance of
// the next service in turn, with `params.server_uuid` (a different server
// each time, so no agent replaces another) and `params.image_uuid`, plus a
// few metadata keys. A run creates N instances (10k, 50k, 200k) and reports
// the rate over all of them.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { startCeiling } from './ceiling.js';
import { cpuSeconds, fmt, load, machineCpu, request, startServer, writeConfig, type ChildServer, type LoadResult } from './lib.js';

const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';
const V2 = { 'accept-version': '~2' };

export interface CreateWorld {
    services: string[];
    images: string[];
}

/** The application and 20 services (10 vm, 10 agent), through the API. */
export async function setUpServices(url: string): Promise<CreateWorld> {
    const app = await request(url, 'POST', '/applications', { name: 'sdc', owner_uuid: OWNER, metadata: { datacenter_name: 'us-east-1' } }, V2);
    if (app.status !== 200) {
        throw new Error(`CreateApplication: ${app.status} ${app.body}`);
    }
    const appUuid = (JSON.parse(app.body) as { uuid: string }).uuid;
    const services: string[] = [];
    const images: string[] = [];
    for (let i = 0; i < 20; i++) {
        const image = randomUUID();
        const r = await request(
            url,
            'POST',
            '/services',
            {
                name: `svc${i}`,
                application_uuid: appUuid,
                type: i % 2 === 0 ? 'vm' : 'agent',
                params: { image_uuid: image },
                metadata: { SERVICE_NAME: `svc${i}.example.com` },
            },
            V2,
        );
        if (r.status !== 200) {
            throw new Error(`CreateService: ${r.status} ${r.body}`);
        }
        services.push((JSON.parse(r.body) as { uuid: string }).uuid);
        images.push(image);
    }
    return { services, images };
}

/** The body of the i-th create. */
export function createBody(world: CreateWorld, i: number): Record<string, unknown> {
    const s = i % world.services.length;
    return {
        service_uuid: world.services[s],
        params: { server_uuid: randomUUID(), image_uuid: world.images[s], alias: `inst${i}` },
        metadata: { ADMIN_IP: `10.0.${(i >> 8) & 255}.${i & 255}`, N: i, ROLE: `svc${s}` },
    };
}

/** Create `n` instances at `concurrency`; the load result over all of them. */
export async function createMany(url: string, world: CreateWorld, n: number, concurrency = 16, offset = 0): Promise<LoadResult> {
    return load(concurrency, { total: n }, (i) => request(url, 'POST', '/instances', createBody(world, offset + i), V2));
}

export interface CreateRun {
    n: number;
    /** Bytes of a create's answer. */
    bytes: number;
    result: LoadResult;
    /** Share of one core the server used during the run (1 = one core busy). */
    serverCores: number;
    /** Share of one core this client used. */
    clientCores: number;
    /** Share of the machine's cores busy, everything on it counted (other work too). */
    machineBusy: number;
}

/**
 * One fresh store per size: the server is started, the services set up,
 * then `n` creates measured. `extra` goes into the server's config.
 */
export async function benchCreateSizes(sizes: number[], extra: Record<string, unknown> = {}): Promise<CreateRun[]> {
    const out: CreateRun[] = [];
    for (const n of sizes) {
        const dir = mkdtempSync(join(tmpdir(), 'sapi-create-'));
        const port = 18000 + Math.floor(Math.random() * 1000);
        writeConfig(join(dir, 'config.json'), port, join(dir, 'sapi.sqlite'), extra);
        let srv: ChildServer | undefined;
        try {
            srv = await startServer(join(dir, 'config.json'), port);
            const world = await setUpServices(srv.url);
            const bytes = await answerBytes(srv.url, world);
            const s0 = cpuSeconds(srv.pid);
            const c0 = process.cpuUsage();
            const m0 = machineCpu();
            const result = await createMany(srv.url, world, n);
            const c1 = process.cpuUsage(c0);
            const m1 = machineCpu();
            out.push({
                n,
                bytes,
                result,
                serverCores: (cpuSeconds(srv.pid) - s0) / result.seconds,
                clientCores: (c1.user + c1.system) / 1e6 / result.seconds,
                machineBusy: (m1.busy - m0.busy) / result.seconds / cpus().length,
            });
        } finally {
            await srv?.stop();
            rmSync(dir, { recursive: true, force: true });
        }
    }
    return out;
}

export function createLine(r: CreateRun): string {
    const x = r.result;
    return (
        `CreateInstance c=16 N=${String(r.n).padEnd(7)} ${fmt(x.rps, 0).padStart(6)} /s  p50 ${fmt(x.p50, 2)} ms  p99 ${fmt(x.p99, 2)} ms  errors ${x.errors}` +
        `  (CPU: server ${fmt(r.serverCores * 100, 0)}%, client ${fmt(r.clientCores * 100, 0)}% of a core; machine ${fmt(r.machineBusy * 100, 0)}% busy;` +
        ` server ${fmt((r.serverCores / x.rps) * 1e6, 0)} µs of CPU per create)`
    );
}

/** SAPI 2.1.2's create rate with this client, by number of instances created. */
export const V212_CREATES: Record<number, number> = { 10_000: 584, 50_000: 703, 200_000: 826 };
/** What SAPI-TS is held to: this multiple of 2.1.2's rate. */
export const CREATE_TARGET = 3;

/** The size of a create's answer, to give the ceiling's server the same. */
async function answerBytes(url: string, world: CreateWorld): Promise<number> {
    const r = await request(url, 'POST', '/instances', createBody(world, 0), V2);
    return Buffer.byteLength(r.body);
}

/**
 * Every size, `runs` times, each on a fresh store; after each run the same
 * client sends the same creates to the trivial server (the ceiling), so
 * each figure has a ceiling measured on the machine as it was then.
 * Returns the closing note's lines.
 */
export async function benchCreate(sizes: number[], runs: number): Promise<string[]> {
    const notes: string[] = [];
    for (const n of sizes) {
        const rates: number[] = [];
        const ceilings: number[] = [];
        for (let k = 0; k < runs; k++) {
            const [run] = await benchCreateSizes([n]);
            if (!run) {
                continue;
            }
            const ceiling = await createCeiling(Math.min(n, 10_000), run.bytes);
            rates.push(run.result.rps);
            ceilings.push(ceiling.rps);
            console.log(
                `${createLine(run)}\n    ceiling (same client, trivial server, ${run.bytes}-byte answers): ${fmt(ceiling.rps, 0)} /s → SAPI at ${fmt((100 * run.result.rps) / ceiling.rps, 0)}% of it`,
            );
        }
        const v212 = V212_CREATES[n];
        const best = Math.max(...rates);
        const median = [...rates].sort((a, b) => a - b)[Math.floor((rates.length - 1) / 2)] ?? 0;
        const ceil = [...ceilings].sort((a, b) => a - b)[Math.floor((ceilings.length - 1) / 2)] ?? 0;
        const vs = v212
            ? `   | 2.1.2: ${v212} /s → ${fmt(median / v212, 2)}x (best ${fmt(best / v212, 2)}x; target ≥${CREATE_TARGET}x: ${median >= CREATE_TARGET * v212 ? 'met' : best >= CREATE_TARGET * v212 ? 'met by the best run only' : 'NOT met'})`
            : '';
        const line = `CreateInstance N=${n}: median ${fmt(median, 0)} /s, best ${fmt(best, 0)} /s of ${rates.length}; ceiling ${fmt(ceil, 0)} /s → ${fmt((100 * median) / ceil, 0)}% of the ceiling${vs}`;
        console.log(line);
        notes.push(line);
    }
    return notes;
}

/** The create load against the trivial server. */
async function createCeiling(total: number, bytes: number): Promise<LoadResult> {
    const port = 17000 + Math.floor(Math.random() * 1000);
    const srv = await startCeiling(port, bytes);
    try {
        const world: CreateWorld = { services: Array.from({ length: 20 }, () => randomUUID()), images: Array.from({ length: 20 }, () => randomUUID()) };
        return await load(16, { total }, (i) => request(srv.url, 'POST', '/instances', createBody(world, i), V2));
    } finally {
        await srv.stop();
    }
}

// Run alone: node dist/bench/create.js [N ...] (BENCH_CREATE_RUNS runs of each, default 1).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
    const sizes = process.argv.slice(2).map(Number);
    await benchCreate(sizes.length > 0 ? sizes : [10_000], Number(process.env.BENCH_CREATE_RUNS ?? 1));
}
