// The ceiling on this machine: the same client as the SAPI figures, against
// a trivial Node HTTP server in its own process that reads each request's
// body and answers a fixed body of the size SAPI answers. What SAPI does
// beyond that (routing, validation, the store, logging, metrics) is the gap
// between a SAPI figure and the ceiling measured in the same run.
//
// Run as a script, this file is that server: node ceiling.js PORT BYTES STATUS.

import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { load, request, type LoadResult, type Reply } from './lib.js';

export interface CeilingServer {
    url: string;
    pid: number;
    stop(): Promise<void>;
}

/** Start the trivial server in a child process, answering `bytes` bytes with `status`. */
export async function startCeiling(port: number, bytes: number, status = 200): Promise<CeilingServer> {
    const proc: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), String(port), String(bytes), String(status)], {
        stdio: ['ignore', 'ignore', 'inherit'],
    });
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 200; i++) {
        try {
            await request(url, 'GET', '/');
            break;
        } catch {
            await new Promise((r) => setTimeout(r, 25));
        }
    }
    return {
        url,
        pid: proc.pid ?? 0,
        stop: () =>
            new Promise((resolve) => {
                proc.once('exit', () => resolve());
                proc.kill('SIGTERM');
            }),
    };
}

/** The same load as a SAPI figure, against the trivial server (same method, path and request body). */
export function ceilingLoad(
    url: string,
    concurrency: number,
    opts: { seconds?: number; total?: number },
    make: (i: number) => { method: string; path: string; body?: unknown; headers?: Record<string, string> },
): Promise<LoadResult> {
    return load(concurrency, opts, (i): Promise<Reply> => {
        const r = make(i);
        return request(url, r.method, r.path, r.body, r.headers);
    });
}

function serve(port: number, bytes: number, status: number): void {
    const body = Buffer.from(JSON.stringify({ pad: 'x'.repeat(Math.max(0, bytes - 10)) }).slice(0, Math.max(bytes, 2)));
    const server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
            if (status === 304) {
                res.writeHead(304, { etag: '"0123456789abcdef0123"' });
                res.end();
                return;
            }
            res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
            res.end(body);
        });
    });
    server.keepAliveTimeout = 60_000;
    server.listen(port, '127.0.0.1');
    process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
    serve(Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4] ?? 200));
}
