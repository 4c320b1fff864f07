// Cold start: `node dist/bin/sapi.js` on an empty embedded store, from the
// spawn to the first 200 on /ping. Each run gets a fresh store directory and
// port; the figure is the median of the runs.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { fmt, SERVER_JS, writeConfig } from './lib.js';

/** SAPI 2.1.2's time from start to its first answer on /ping, for comparison. */
const SAPI_212_SECONDS = 0.24;

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

/** Seconds from spawn to the first 200 on /ping. */
async function oneStart(): Promise<number> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-cold-'));
    const port = 19000 + Math.floor(Math.random() * 1000);
    const config = join(dir, 'config.json');
    writeConfig(config, port, join(dir, 'sapi.sqlite'), { log_level: 'fatal' });
    const t0 = performance.now();
    const proc = spawn(process.execPath, [SERVER_JS, '-f', config], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
        for (;;) {
            if (proc.exitCode !== null) {
                throw new Error(`sapi exited with status ${proc.exitCode} before answering`);
            }
            if ((await ping(port)) === 200) {
                return (performance.now() - t0) / 1000;
            }
            if (performance.now() - t0 > 30_000) {
                throw new Error('sapi did not answer /ping within 30 s');
            }
            await new Promise((r) => setTimeout(r, 5));
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

export async function benchColdStart(runs = 5): Promise<number> {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
        times.push(await oneStart());
    }
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    console.log(
        `cold start (spawn → first 200 on /ping, empty store)  median ${fmt(median, 2)} s of ${runs} ` +
            `(${sorted.map((s) => fmt(s, 2)).join(', ')})   | 2.1.2: ${fmt(SAPI_212_SECONDS, 2)} s  → ${fmt(median / SAPI_212_SECONDS, 2)}x`,
    );
    return median;
}
