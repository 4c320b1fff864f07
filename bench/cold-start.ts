// Cold start: `node dist/bin/sapi.js` on an empty embedded store, from the
// spawn to the first 200 on /ping, polled every 2 ms. Each run gets a fresh
// store directory and port; the figure is the median of the runs.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cpuSeconds, fmt, SERVER_JS, writeConfig } from './lib.js';

/** The ceiling's trivial server (bench/ceiling.ts), compiled beside this file. */
const CEILING_JS = join(dirname(fileURLToPath(import.meta.url)), 'ceiling.js');

/** SAPI 2.1.2's time from spawn to its first 200 on /ping, as measured beside SAPI-TS on the same machine. */
export const SAPI_212_SECONDS = 0.497;
/** What SAPI-TS is held to. */
export const TARGET_SECONDS = 0.3;
/** Between two GET /ping while the server starts (as the issue measures it). */
const POLL_MS = 2;

/** A GET /ping on a fresh connection: its status, or 0 when nothing listens yet. */
function ping(port: number): Promise<number> {
    return new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/ping', agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', () => resolve(0));
    });
}

export interface StartRun {
    /** Seconds from spawn to the first 200 on /ping. */
    seconds: number;
    /** CPU seconds the server had used by then (less sensitive to other work on the machine). */
    cpu: number;
}

/** One start: from spawn to the first 200 on /ping; `trivial`: the ceiling's trivial server instead of SAPI. */
async function oneStart(trivial = false): Promise<StartRun> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-cold-'));
    const port = 19000 + Math.floor(Math.random() * 1000);
    const config = join(dir, 'config.json');
    writeConfig(config, port, join(dir, 'sapi.sqlite'), { log_level: 'fatal' });
    const args = trivial ? [CEILING_JS, String(port), '100'] : [SERVER_JS, '-f', config];
    const t0 = performance.now();
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
        for (;;) {
            if (proc.exitCode !== null) {
                throw new Error(`sapi exited with status ${proc.exitCode} before answering`);
            }
            if ((await ping(port)) === 200) {
                const seconds = (performance.now() - t0) / 1000;
                return { seconds, cpu: cpuSeconds(proc.pid ?? 0) };
            }
            if (performance.now() - t0 > 30_000) {
                throw new Error('sapi did not answer /ping within 30 s');
            }
            await new Promise((r) => setTimeout(r, POLL_MS));
        }
    } finally {
        await new Promise<void>((resolve) => {
            if (proc.exitCode !== null) {
                resolve();
                return;
            }
            proc.once('exit', () => resolve());
            proc.kill('SIGTERM');
        });
        rmSync(dir, { recursive: true, force: true });
    }
}

export async function benchColdStart(runs = 5): Promise<{ median: number; best: number; cpuMedian: number; ceiling: number }> {
    const starts: StartRun[] = [];
    const trivial: number[] = [];
    // Interleaved with the trivial server's starts, so both see the same machine.
    for (let i = 0; i < runs; i++) {
        starts.push(await oneStart());
        trivial.push((await oneStart(true)).seconds);
    }
    const ceiling = [...trivial].sort((a, b) => a - b)[Math.floor(trivial.length / 2)] ?? 0;
    const sorted = starts.map((s) => s.seconds).sort((a, b) => a - b);
    const cpus = starts.map((s) => s.cpu).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const best = sorted[0] ?? 0;
    const cpuMedian = cpus[Math.floor(cpus.length / 2)] ?? 0;
    console.log(
        `cold start (spawn → first 200 on /ping, empty store)  median ${fmt(median * 1000, 0)} ms, best ${fmt(best * 1000, 0)} ms of ${runs} ` +
            `(${sorted.map((s) => fmt(s * 1000, 0)).join(', ')}); server CPU by then: median ${fmt(cpuMedian * 1000, 0)} ms` +
            `   | 2.1.2: ${fmt(SAPI_212_SECONDS * 1000, 0)} ms → ${fmt(SAPI_212_SECONDS / median, 2)}x as fast (target ≤ ${fmt(TARGET_SECONDS * 1000, 0)} ms: ${median <= TARGET_SECONDS ? 'met' : 'NOT met'})`,
    );
    console.log(
        `  ceiling: a trivial node HTTP server, spawn → first 200: median ${fmt(ceiling * 1000, 0)} ms; SAPI takes ${fmt((median - ceiling) * 1000, 0)} ms more (${fmt(median / Math.max(ceiling, 1e-6), 1)}x the ceiling)`,
    );
    return { median, best, cpuMedian, ceiling };
}
