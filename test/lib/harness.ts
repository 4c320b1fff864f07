// startSapi(): the real server on 127.0.0.1:0 over a real store, for API
// tests; `call()` is a small HTTP client that returns status, headers and
// the parsed body.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import bunyan from 'bunyan';

import { createApp, type SapiApp } from '../../lib/app.js';
import { parseConfig, type SapiConfig } from '../../lib/config.js';
import type { Ctx } from '../../lib/model/context.js';
import { createStore, type CreateStoreOptions, type StoreSetup } from '../../lib/stor/index.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import type { Store } from '../../lib/stor/store.js';

export interface Harness {
    url: string;
    app: SapiApp;
    ctx: Ctx;
    store: Store;
    dir: string;
    call: (method: string, path: string, opts?: CallOpts) => Promise<CallResult>;
    close: () => Promise<void>;
}

export interface StartOpts {
    config?: Record<string, unknown>;
    /** Reuse a data directory (restart tests). */
    dir?: string;
    store?: Store;
    keepDir?: boolean;
    /** Build the store as bin/sapi.ts does (createStore: sqlite or moray + cache). */
    viaCreateStore?: boolean;
    /** With viaCreateStore: how long start-up waits for Moray, and so on. */
    storeOptions?: CreateStoreOptions;
    /** The app's logger (default: testLog()). */
    log?: bunyan;
}

export function testLog(): bunyan {
    return bunyan.createLogger({ name: 'sapi-test', level: (process.env.LOG_LEVEL as bunyan.LogLevel) || 'fatal' });
}

export async function startSapi(opts: StartOpts = {}): Promise<Harness> {
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sapi-test-'));
    const config: SapiConfig = parseConfig({
        port: 0,
        host: '127.0.0.1',
        store: { backend: 'sqlite', path: join(dir, 'sapi.sqlite') },
        ...opts.config,
    });
    const log = opts.log ?? testLog();
    let store = opts.store;
    let setup: StoreSetup | undefined;
    if (!store && opts.viaCreateStore) {
        setup = await createStore(config, log, opts.storeOptions);
        store = setup.store;
    }
    if (!store) {
        const s = new SqliteStore({ path: config.store.path });
        await s.init();
        store = s;
    }
    const app = await createApp({ config, log, store, ...(setup ? { setup } : {}) });
    const port = await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${port}`;
    return {
        url,
        app,
        ctx: app.ctx,
        get store() {
            return app.ctx.store;
        },
        dir,
        call: (method, path, callOpts) => call(url, method, path, callOpts),
        close: async () => {
            await app.close();
            if (!opts.keepDir && !opts.dir) {
                rmSync(dir, { recursive: true, force: true });
            }
        },
    };
}

export interface CallOpts {
    body?: unknown;
    /** Raw body text (sent as is). */
    raw?: string;
    headers?: Record<string, string>;
    /** Accept-Version; default none (the v1 view). */
    version?: string;
}

export interface CallResult {
    status: number;
    headers: Headers;
    text: string;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    body: any;
}

export async function call(base: string, method: string, path: string, opts: CallOpts = {}): Promise<CallResult> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | undefined;
    if (opts.raw !== undefined) {
        body = opts.raw;
        headers['content-type'] ??= 'application/json';
    } else if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] = 'application/json';
    }
    if (opts.version) {
        headers['accept-version'] = opts.version;
    }
    const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text.length > 0) {
        try {
            parsed = JSON.parse(text);
        } catch {
            parsed = undefined;
        }
    }
    return { status: res.status, headers: res.headers, text, body: parsed };
}
