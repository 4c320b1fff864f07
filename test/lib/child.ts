// Run a TypeScript entry point (bin/sapi.ts, bin/sapiadm.ts) in a child
// process, through the same TypeScript loader tap gives this process.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function tsLoaderArgs(): string[] {
    return process.execArgv.filter((a) => a.includes('@tapjs/typescript') || a === '--import=tsx' || a === '--enable-source-maps');
}

export function spawnTs(script: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    return spawn(process.execPath, [...tsLoaderArgs(), join(ROOT, script), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        ...opts,
    });
}

export async function waitForPing(url: string, timeoutMs = 60_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
        try {
            const r = await fetch(`${url}/ping`);
            if (r.status === 200) {
                return;
            }
        } catch {
            // not up yet
        }
        await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`server at ${url} did not come up`);
}

export function exited(proc: ChildProcess): Promise<number | null> {
    return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) {
            resolve(proc.exitCode);
            return;
        }
        proc.once('exit', (code) => resolve(code));
    });
}

/** A port that was free a moment ago (for child servers that need a fixed port). */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const addr = srv.address();
            const port = typeof addr === 'object' && addr ? addr.port : 0;
            srv.close(() => resolve(port));
        });
    });
}

export interface ChildSapi {
    url: string;
    /** The config file, for a restart on the same store. */
    config: string;
    start(): Promise<ChildProcess>;
}

/**
 * A bin/sapi.ts child on a free port with its own embedded store under a
 * temp directory (removed at teardown); start() may be called again after
 * a kill, on the same store.
 */
export async function childSapi(t: { teardown(fn: () => unknown): void }): Promise<ChildSapi> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-child-'));
    const port = await freePort();
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ port, host: '127.0.0.1', log_level: 'fatal', store: { backend: 'sqlite', path: join(dir, 'sapi.sqlite') } }));
    const url = `http://127.0.0.1:${port}`;
    const procs: ChildProcess[] = [];
    t.teardown(() => {
        for (const p of procs) {
            p.kill('SIGKILL');
        }
        rmSync(dir, { recursive: true, force: true });
    });
    return {
        url,
        config,
        start: async () => {
            const proc = spawnTs('bin/sapi.ts', ['-f', config]);
            procs.push(proc);
            await waitForPing(url);
            return proc;
        },
    };
}
