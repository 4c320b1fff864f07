// Several SAPI processes on one Moray test server: each a bin/sapi.ts child
// in full mode with its own local cache file, all on the same fake Moray
// (and, when given, the same fake CNAPI and IMGAPI). Used by the
// several-sapis.*.test.ts files.

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { exited, freePort, spawnTs, waitForPing } from '../lib/child.js';
import type { FakeMoray } from '../lib/fake-moray.js';

export interface SapiProcess {
    name: string;
    url: string;
    proc: ChildProcess | null;
    /** Start (again, on the same cache file). */
    start(): Promise<void>;
    /** kill -9, and wait for the exit. */
    kill(): Promise<void>;
    /** A JSON request; the body parsed when it is JSON. */
    call(method: string, path: string, opts?: { body?: unknown; headers?: Record<string, string>; version?: string }): Promise<Answer>;
}

export interface Answer {
    status: number;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    body: any;
    text: string;
    headers: Headers;
}

export interface SapiOnMorayOptions {
    name: string;
    moray: FakeMoray;
    /** Config keys added to the defaults (cnapi, imgapi, deploy, lease_ttl_ms...). */
    config?: Record<string, unknown>;
}

/** A SAPI child on `moray` (not started). */
export async function sapiOnMoray(t: { teardown(fn: () => unknown): void }, opts: SapiOnMorayOptions): Promise<SapiProcess> {
    const dir = mkdtempSync(join(tmpdir(), `sapi-${opts.name}-`));
    const port = await freePort();
    const config = join(dir, 'config.json');
    writeFileSync(
        config,
        JSON.stringify({
            port,
            host: '127.0.0.1',
            log_level: 'fatal',
            mode: 'full',
            store: { backend: 'moray', path: join(dir, 'cache.sqlite') },
            moray: { host: opts.moray.host, port: opts.moray.port },
            ...opts.config,
        }),
    );
    const url = `http://127.0.0.1:${port}`;
    const self: SapiProcess = {
        name: opts.name,
        url,
        proc: null,
        start: async () => {
            const proc = spawnTs('bin/sapi.ts', ['-f', config], { stdio: ['ignore', 'ignore', 'inherit'] });
            self.proc = proc;
            await waitForPing(url);
        },
        kill: async () => {
            const p = self.proc;
            if (p && p.exitCode === null && p.signalCode === null) {
                p.kill('SIGKILL');
                await exited(p);
            }
        },
        call: async (method, path, o = {}) => {
            const headers: Record<string, string> = { ...o.headers };
            if (o.body !== undefined) {
                headers['content-type'] = 'application/json';
            }
            if (o.version) {
                headers['accept-version'] = o.version;
            }
            const r = await fetch(url + path, { method, headers, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) });
            const text = await r.text();
            let body: unknown;
            try {
                body = text === '' ? null : JSON.parse(text);
            } catch {
                body = null;
            }
            return { status: r.status, body, text, headers: r.headers };
        },
    };
    t.teardown(async () => {
        await self.kill();
        rmSync(dir, { recursive: true, force: true });
    });
    return self;
}

/** Call `fn` until it returns true, every `everyMs`, for at most `deadlineMs`; whether it did. */
export async function eventually(fn: () => Promise<boolean>, deadlineMs = 20_000, everyMs = 50): Promise<boolean> {
    const until = Date.now() + deadlineMs;
    for (;;) {
        if (await fn()) {
            return true;
        }
        if (Date.now() >= until) {
            return false;
        }
        await new Promise((r) => setTimeout(r, everyMs));
    }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
