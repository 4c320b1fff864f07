// Benchmark plumbing: a SAPI server in a child process (its own core), a
// keep-alive load generator, latency percentiles and RSS readings; seeded
// instances written straight into a store.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { withIndexes } from '../lib/model/instance-records.js';
import type { Instance } from '../lib/model/types.js';
import type { BatchOp, Store } from '../lib/stor/store.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/bin/sapi.js, next to this compiled file's dist/bench/. */
export const SERVER_JS = join(here, '..', 'bin', 'sapi.js');

export interface ChildServer {
    url: string;
    pid: number;
    proc: ChildProcess;
    stop(): Promise<void>;
}

export async function startServer(configPath: string, port: number): Promise<ChildServer> {
    // BENCH_SERVER_NODE_ARGS: extra node options for the server (e.g. --cpu-prof).
    const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const proc = spawn(process.execPath, [...nodeArgs, SERVER_JS, '-f', configPath], { stdio: ['ignore', 'ignore', 'inherit'] });
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 200; i++) {
        try {
            const r = await request(url, 'GET', '/ping');
            if (r.status === 200) {
                break;
            }
        } catch {
            // not up yet
        }
        await new Promise((r) => setTimeout(r, 50));
    }
    return {
        url,
        pid: proc.pid ?? 0,
        proc,
        stop: () =>
            new Promise((resolve) => {
                proc.once('exit', () => resolve());
                proc.kill('SIGTERM');
            }),
    };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

export interface Reply {
    status: number;
    body: string;
    headers: http.IncomingHttpHeaders;
}

export function request(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    return new Promise((resolve, reject) => {
        const data = body === undefined ? undefined : JSON.stringify(body);
        const req = http.request(
            base + path,
            {
                method,
                agent,
                headers: {
                    ...headers,
                    ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
                },
            },
            (res) => {
                const chunks: Buffer[] = [];
                res.on('data', (c: Buffer) => chunks.push(c));
                res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
                res.on('error', reject);
            },
        );
        req.on('error', reject);
        req.end(data);
    });
}

export interface LoadResult {
    requests: number;
    errors: number;
    seconds: number;
    rps: number;
    p50: number;
    p99: number;
}

/** Run `fn` with `concurrency` workers for `seconds` (or `total` calls). */
export async function load(
    concurrency: number,
    opts: { seconds?: number; total?: number },
    fn: (i: number) => Promise<Reply>,
    ok: (r: Reply) => boolean = (r) => r.status < 400,
): Promise<LoadResult> {
    const lat: number[] = [];
    let errors = 0;
    let next = 0;
    const start = performance.now();
    const until = opts.seconds ? start + opts.seconds * 1000 : Infinity;
    const worker = async (): Promise<void> => {
        for (;;) {
            const i = next++;
            if ((opts.total !== undefined && i >= opts.total) || performance.now() >= until) {
                return;
            }
            const t0 = performance.now();
            try {
                const r = await fn(i);
                if (!ok(r)) {
                    errors++;
                }
            } catch {
                errors++;
            }
            lat.push(performance.now() - t0);
        }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = (performance.now() - start) / 1000;
    return { requests: lat.length, errors, seconds, rps: lat.length / seconds, p50: pct(lat, 50), p99: pct(lat, 99) };
}

export function pct(values: number[], p: number): number {
    if (values.length === 0) {
        return 0;
    }
    const s = [...values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

/** Resident set (current) and high-water mark of a process, in MiB. */
export function rss(pid: number): { rss: number; hwm: number } {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** Reset a process's VmHWM to its current RSS (Linux clear_refs). */
export function resetPeak(pid: number): void {
    try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
        // not permitted: the growth figure then counts from process start
    }
}

/** CPU seconds (user + system) a process has used so far (Linux /proc). */
export function cpuSeconds(pid: number): number {
    try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        // utime and stime are fields 14 and 15 of the line (11 and 12 after the name).
        return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
        return 0;
    }
}

/** Seconds of CPU the whole machine spent busy (not idle or iowait) so far, and its iowait seconds. */
export function machineCpu(): { busy: number; iowait: number } {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [user = 0, nice = 0, system = 0, , iowait = 0, irq = 0, softirq = 0, steal = 0] = line.split(/\s+/).slice(1).map(Number);
    return { busy: (user + nice + system + irq + softirq + steal) / 100, iowait: iowait / 100 };
}

export function fmt(n: number, digits = 1): string {
    return n.toFixed(digits);
}

export function writeConfig(path: string, port: number, storePath: string, extra: Record<string, unknown> = {}): void {
    writeFileSync(path, JSON.stringify({ port, host: '127.0.0.1', store: { backend: 'sqlite', path: storePath }, ...extra }));
}

/**
 * The i-th seeded instance: of `services[i % services.length]` (the first ten
 * are agent services, the others vm ones), alias inst<i>, metadata N: i;
 * `params` and `metadata` are added.
 */
export function seededInstance(i: number, services: readonly string[], params: Record<string, unknown>, metadata: Record<string, unknown> = {}): Instance {
    const svcIdx = i % services.length;
    return {
        uuid: randomUUID(),
        service_uuid: services[svcIdx] as string,
        type: svcIdx < 10 ? 'agent' : 'vm',
        params: { ...params, alias: `inst${i}` },
        metadata: { N: i, ...metadata },
    };
}

/** Writes `make(i)` for i below `n`, with its index copies, straight into `store`, `batchSize` to a batch; their uuids. */
export async function putInstances(store: Store, n: number, make: (i: number) => Instance, batchSize = 5000): Promise<string[]> {
    const uuids: string[] = [];
    let ops: BatchOp[] = [];
    for (let i = 0; i < n; i++) {
        const inst = make(i);
        uuids.push(inst.uuid);
        ops.push({ op: 'put', bucket: 'sapi_instances', value: withIndexes(inst) });
        if (ops.length === batchSize) {
            await store.batch(ops);
            ops = [];
        }
    }
    await store.batch(ops);
    return uuids;
}
