// Several SAPI processes on one Moray test server: each a bin/sapi.ts child
// in full mode with its own local cache file, all on the same fake Moray
// (and, when given, the same fake CNAPI and IMGAPI); twoAgentSapis sets up
// two of them for agent work. Used by the several-sapis.*.test.ts files.
// Also cacheWorld: GetConfig's cache in this
// process on a store "another SAPI" writes behind its back, with a fake clock.

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Test } from 'tap';

import { ConfigCache } from '../../lib/model/config-cache.js';
import { buildConfig, configEtag } from '../../lib/model/config-doc.js';
import type { Ctx } from '../../lib/model/context.js';
import { createInstance } from '../../lib/model/instances.js';
import type { BucketName } from '../../lib/stor/buckets.js';
import { ForwardingStore } from '../../lib/stor/forwarding.js';
import type { JsonObject, Store, Stored } from '../../lib/stor/store.js';
import { exited, freePort, spawnTs, waitForPing } from '../lib/child.js';
import { startFakeCnapi, type FakeCnapi } from '../lib/fake-cnapi.js';
import { startFakeImgapi, type FakeImgapi } from '../lib/fake-imgapi.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';
import { aManifest, anApplication, aService, modelCtx, reqInfo, type HasTeardown } from '../lib/model-ctx.js';

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

/** The admin user: the owner of the application twoAgentSapis makes. */
export const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';

export interface TwoAgentSapis {
    moray: FakeMoray;
    imgapi: FakeImgapi;
    cnapi: FakeCnapi;
    /** Started; the SAPI the fake CNAPI's agents report to. */
    a: SapiProcess;
    /** Started. */
    b: SapiProcess;
    /** The application (of OWNER), made through A. */
    app: string;
    /** An agent service of the application on `image`, made through A; its uuid. */
    agentService(name: string, image: string): Promise<string>;
}

/**
 * Fake Moray, IMGAPI and CNAPI (agents adopt themselves while they install,
 * each task taking `taskDurationMs`) and two SAPIs on them, A and B, with
 * leases of `leaseTtlMs` and agent tasks given up after `taskDeadlineMs`.
 */
export async function twoAgentSapis(t: Test, opts: { taskDurationMs: number; leaseTtlMs: number; taskDeadlineMs: number }): Promise<TwoAgentSapis> {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const imgapi = await startFakeImgapi();
    t.teardown(() => imgapi.close());
    const cnapi = await startFakeCnapi({ taskDurationMs: opts.taskDurationMs, imgapi: { url: imgapi.url }, adoptDuringInstall: true, adoptIntervalMs: 20 });
    t.teardown(() => cnapi.close());
    const config = {
        cnapi: { url: cnapi.url },
        imgapi: { url: imgapi.url },
        lease_ttl_ms: opts.leaseTtlMs,
        deploy: { taskPollIntervalMs: 10, taskDeadlineMs: opts.taskDeadlineMs, cnAgentTaskDeadlineMs: opts.taskDeadlineMs },
    };
    const a = await sapiOnMoray(t, { name: 'a', moray, config });
    const b = await sapiOnMoray(t, { name: 'b', moray, config });
    await a.start();
    await b.start();
    cnapi.sapiUrl = a.url;

    const app = await a.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER } });
    t.equal(app.status, 200, app.text);
    const agentService = async (name: string, image: string): Promise<string> => {
        const r = await a.call('POST', '/services', {
            body: { name, application_uuid: app.body.uuid, type: 'agent', params: { image_uuid: image } },
            version: '~2',
        });
        t.equal(r.status, 200, r.text);
        return r.body.uuid as string;
    };
    return { moray, imgapi, cnapi, a, b, app: app.body.uuid as string, agentService };
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

// ---- GetConfig's cache on a shared store, in this process

/** Counts reads per bucket. */
export class CountingStore extends ForwardingStore {
    readonly reads = new Map<string, number>();
    constructor(private readonly store: Store) {
        super();
    }
    get inner(): Store {
        return this.store;
    }
    override get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        this.reads.set(bucket, (this.reads.get(bucket) ?? 0) + 1);
        return this.store.get<T>(bucket, uuid);
    }
}

/**
 * A shared-store ConfigCache on a fake clock (`clock.now`), reading through a
 * CountingStore, with an application (metadata A: 1, one manifest) and a
 * service (metadata S: 1) to make instances of.
 */
export async function cacheWorld(t: HasTeardown, opts: { fallbackMs?: number } = {}) {
    const clock = { now: 0 };
    const base = await modelCtx(t);
    const cache = new ConfigCache({ shared: true, ...opts, now: () => clock.now });
    const counting = new CountingStore(base.store);
    const ctx: Ctx = { ...base, store: cache.watch(counting), configs: cache };
    const m = await aManifest(ctx);
    const app = await anApplication(ctx, { metadata: { A: 1 }, manifests: { m: m.uuid } });
    const svc = (await aService(ctx, app.uuid, { metadata: { S: 1 } })).uuid;
    const inst = async (): Promise<string> => (await createInstance(ctx, reqInfo(), { service_uuid: svc, metadata: {} })).instance.uuid;
    /** A write by another process: straight into the store, unseen by the cache. */
    const otherWrite = async (bucket: BucketName, uuid: string, change: (v: JsonObject) => JsonObject): Promise<void> => {
        const cur = (await base.store.get<JsonObject>(bucket, uuid))?.value as JsonObject;
        await base.store.put(bucket, change(cur));
    };
    const fresh = async (uuid: string): Promise<string> => configEtag(await buildConfig(base, uuid));
    /** A successful poll of the change feed that began now, of a chain that began at `since`. */
    const poll = (since: number): void => cache.polled(clock.now, since);
    return { clock, cache, ctx, counting, app: app.uuid, svc, manifest: m.uuid, inst, otherWrite, fresh, poll, raw: base.store };
}
