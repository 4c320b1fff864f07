// Typed promise wrapper over the npm `moray` client (callbacks and event
// emitters) that throws only lib/stor/errors.ts types.
//
// Moray's own request errors arrive wrapped in a VError chain
// (client → FastRequestError → FastServerError → server error); the server
// error's `name` decides the mapping. Anything that is not a server error
// (no connection, socket closed, timeout) is a StoreUnavailableError.

import { createRequire } from 'node:module';

import bunyan from 'bunyan';

import type { IndexDef } from '../buckets.js';
import { EtagConflictError, NotFoundError, StoreError, StoreUnavailableError, UniqueError } from '../errors.js';
import type { JsonObject } from '../store.js';

const require = createRequire(import.meta.url);

// ---- the untyped npm client, as much of it as we use

type Callback<R = unknown> = (err: Error | null | undefined, res?: R) => void;

interface RawEmitter {
    on(event: string, fn: (arg: never) => void): unknown;
}

interface RawMorayClient {
    on(event: string, fn: (arg: never) => void): unknown;
    once(event: string, fn: (arg: never) => void): unknown;
    removeListener(event: string, fn: (arg: never) => void): unknown;
    readonly connected: boolean;
    getBucket(name: string, opts: object, cb: Callback<RawBucket>): void;
    createBucket(name: string, cfg: object, opts: object, cb: Callback): void;
    updateBucket(name: string, cfg: object, opts: object, cb: Callback): void;
    deleteBucket(name: string, opts: object, cb: Callback): void;
    listBuckets(opts: object, cb: Callback<RawBucket[]>): void;
    putObject(bucket: string, key: string, value: object, opts: object, cb: Callback<{ etag?: string }>): void;
    getObject(bucket: string, key: string, opts: object, cb: Callback<MorayObject>): void;
    deleteObject(bucket: string, key: string, opts: object, cb: Callback): void;
    findObjects(bucket: string, filter: string, opts: object): RawEmitter;
    batch(requests: object[], opts: object, cb: Callback<unknown>): void;
    reindexObjects(bucket: string, count: number, opts: object, cb: Callback<ReindexResult>): void;
    ping(opts: object, cb: Callback): void;
    close(): void;
}

interface RawBucket {
    name: string;
    index: Record<string, IndexDef>;
    options?: { version?: number };
    mtime?: Date;
    reindex_active?: Record<string, string[]>;
}

const moray = require('moray') as { createClient(opts: object): RawMorayClient };

// ---- public types

export type MorayLogger = bunyan;

export interface MorayConnectOptions {
    /** IP address or hostname (A records); with `port`. */
    host?: string | undefined;
    port?: number | undefined;
    /** DNS SRV discovery instead of host/port. */
    srvDomain?: string | undefined;
    /** Passed to the moray client as is (not combinable with `retry`). */
    cueballOptions?: Record<string, unknown> | undefined;
    /** TCP connect timeout, and how long connectMoray() waits (default 1000 / 10000). */
    connectTimeoutMs?: number | undefined;
    /**
     * Reconnect policy (moray client "legacy" options; default 10 attempts,
     * 100 ms doubling to 6 s, then every 6 s forever); ignored with cueballOptions.
     */
    retry?: { retries?: number; minTimeout?: number; maxTimeout?: number } | undefined;
    /** Fail a request that has not completed after this long (default 30 s; 0 = never). */
    requestTimeoutMs?: number | undefined;
    log?: MorayLogger | undefined;
}

export interface MorayBucketConfig {
    index: Record<string, IndexDef>;
    options?: { version?: number };
}

export interface MorayBucket {
    name: string;
    index: Record<string, IndexDef>;
    version: number;
    /** Index fields still being reindexed, by bucket version. */
    reindexActive: Record<string, string[]>;
}

export interface MorayObject {
    bucket: string;
    key: string;
    value: JsonObject;
    _id: number;
    _etag: string;
    _mtime?: number;
    /** Rows matching the (indexed part of the) filter, ignoring limit/offset. */
    _count?: number;
}

export interface MoraySort {
    attribute: string;
    order: 'ASC' | 'DESC';
}

export interface FindOptions {
    limit?: number;
    offset?: number;
    sort?: MoraySort | MoraySort[];
}

export interface WriteOptions {
    /** string: must match; null: must not exist; undefined: unconditional. */
    etag?: string | null | undefined;
}

export type MorayBatchRequest =
    | { operation: 'put'; bucket: string; key: string; value: JsonObject; options?: WriteOptions }
    | { operation: 'delete'; bucket: string; key: string; options?: WriteOptions };

export interface ReindexResult {
    processed: number;
    remaining?: number | undefined;
}

/**
 * A Moray request error that is neither "not found", "etag conflict",
 * "unique" nor a connection problem (e.g. InvalidQueryError,
 * BucketConflictError, BucketVersionError). `morayName` is Moray's name.
 */
export class MorayRequestError extends StoreError {
    override name = 'MorayRequestError';
    constructor(
        readonly morayName: string,
        message: string,
        override readonly cause?: unknown,
    ) {
        super(`moray ${morayName}: ${message}`);
    }
}

// ---- error mapping

/** Request errors that say nothing about Moray's health (2.1.2's list). */
const USAGE_ERRORS = new Set([
    'BucketConflictError',
    'BucketVersionError',
    'InvalidBucketConfigError',
    'InvalidBucketNameError',
    'InvalidIndexDefinitionError',
    'InvalidIndexTypeError',
    'InvalidQueryError',
    'InvalidRequireError',
    'InvalidArgumentError',
    'NotFunctionError',
    'NotIndexedError',
    'NotNullableError',
    'UnhandledOptionsError',
]);

interface ErrorInfo {
    name?: string;
    message?: string;
    context?: Record<string, unknown>;
}

function causeOf(err: unknown): unknown {
    if (!err || typeof err !== 'object') {
        return undefined;
    }
    const e = err as { cause?: unknown; jse_cause?: unknown };
    if (typeof e.cause === 'function') {
        try {
            return (e.cause as () => unknown).call(err) ?? undefined;
        } catch {
            return e.jse_cause;
        }
    }
    return e.cause ?? e.jse_cause;
}

/** The error the Moray server sent, if `err` carries one. */
export function serverErrorOf(err: unknown): ErrorInfo | null {
    let cur: unknown = err;
    for (let depth = 0; cur && depth < 10; depth++) {
        const e = cur as ErrorInfo;
        if (e.name === 'FastServerError') {
            const c = causeOf(cur) as ErrorInfo | undefined;
            return c ?? null;
        }
        cur = causeOf(cur);
    }
    return null;
}

/** Moray's error name (server errors), else the outermost named cause. */
export function morayErrorName(err: unknown): string | null {
    const s = serverErrorOf(err);
    if (s?.name) {
        return s.name;
    }
    let cur: unknown = err;
    for (let depth = 0; cur && depth < 10; depth++) {
        const n = (cur as ErrorInfo).name;
        if (n && n !== 'VError' && n !== 'Error' && n !== 'FastRequestError') {
            return n;
        }
        cur = causeOf(cur);
    }
    return null;
}

export interface ErrorContext {
    bucket?: string | undefined;
    key?: string | undefined;
    expected?: string | null | undefined;
}

function str(v: unknown): string | undefined {
    return typeof v === 'string' ? v : undefined;
}

/** Map any error from the moray client to a lib/stor/errors.ts type. */
export function translateError(err: unknown, ctx: ErrorContext = {}): StoreError {
    if (err instanceof StoreError) {
        return err;
    }
    const server = serverErrorOf(err);
    if (!server?.name) {
        const msg = err instanceof Error ? err.message : String(err);
        return new StoreUnavailableError(`moray unavailable: ${msg}`, err);
    }
    const c = server.context ?? {};
    const bucket = ctx.bucket ?? str(c.bucket) ?? '?';
    const key = ctx.key ?? str(c.key) ?? '?';
    switch (server.name) {
        case 'ObjectNotFoundError':
            return new NotFoundError(bucket, key);
        case 'EtagConflictError': {
            const actual = str(c.actual);
            const expected = ctx.expected !== undefined ? ctx.expected : (str(c.expected) ?? null);
            return new EtagConflictError(bucket, key, expected === 'null' ? null : expected, actual === undefined || actual === 'null' ? null : actual);
        }
        case 'UniqueAttributeError':
            return new UniqueError(bucket, key);
        case 'BucketNotFoundError':
            return new StoreUnavailableError(`moray bucket ${bucket} is not set up: ${server.message ?? ''}`, err);
        default:
            if (USAGE_ERRORS.has(server.name)) {
                return new MorayRequestError(server.name, server.message ?? '', err);
            }
            return new StoreUnavailableError(`moray ${server.name}: ${server.message ?? ''}`, err);
    }
}

// ---- the wrapper

function quietLogger(): MorayLogger {
    return bunyan.createLogger({ name: 'moray', level: bunyan.FATAL + 1 });
}

export class MorayClient {
    private closed = false;
    private readonly requestTimeoutMs: number;

    constructor(
        private readonly raw: RawMorayClient,
        opts: { requestTimeoutMs?: number | undefined } = {},
    ) {
        this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
        // The client only emits 'error' with failFast; never let it crash us.
        raw.on('error', () => undefined);
    }

    /** True once the client has had a connection (the moray client's notion). */
    get connected(): boolean {
        return this.raw.connected;
    }

    /** Wait for the first connection. */
    waitConnected(timeoutMs: number): Promise<void> {
        if (this.raw.connected) {
            return Promise.resolve();
        }
        return new Promise((resolve, reject) => {
            const onConnect = (): void => {
                clearTimeout(timer);
                resolve();
            };
            const timer = setTimeout(() => {
                this.raw.removeListener('connect', onConnect);
                reject(new StoreUnavailableError(`moray: no connection after ${timeoutMs} ms`));
            }, timeoutMs);
            this.raw.once('connect', onConnect);
        });
    }

    /** One callback RPC; rejects with a lib/stor/errors.ts type. */
    private call<R>(ctx: ErrorContext, fn: (cb: Callback<R>) => void): Promise<R> {
        return this.callRaw(fn).catch((err: unknown) => {
            throw translateError(err, ctx);
        });
    }

    /** One callback RPC; rejects with the moray client's own error (to look at its name). */
    private callRaw<R>(fn: (cb: Callback<R>) => void): Promise<R> {
        if (this.closed) {
            return Promise.reject(new StoreUnavailableError('moray client is closed'));
        }
        return new Promise<R>((resolve, reject) => {
            let done = false;
            const timer =
                this.requestTimeoutMs > 0
                    ? setTimeout(() => {
                          done = true;
                          reject(new StoreUnavailableError(`moray: no reply after ${this.requestTimeoutMs} ms`));
                      }, this.requestTimeoutMs)
                    : undefined;
            try {
                fn((err, res) => {
                    if (done) {
                        return;
                    }
                    done = true;
                    clearTimeout(timer);
                    if (err) {
                        reject(err);
                    } else {
                        resolve(res as R);
                    }
                });
            } catch (err) {
                // The moray client asserts its arguments synchronously.
                done = true;
                clearTimeout(timer);
                reject(err instanceof Error ? err : new Error(String(err)));
            }
        });
    }

    // ---- buckets

    /** The bucket, or null when it does not exist. */
    async getBucket(name: string): Promise<MorayBucket | null> {
        try {
            const b = await this.callRaw<RawBucket>((cb) => this.raw.getBucket(name, {}, cb));
            return {
                name: b.name,
                index: b.index ?? {},
                version: Number(b.options?.version ?? 0),
                reindexActive: b.reindex_active ?? {},
            };
        } catch (err) {
            if (serverErrorOf(err)?.name === 'BucketNotFoundError') {
                return null;
            }
            throw translateError(err, { bucket: name });
        }
    }

    createBucket(name: string, cfg: MorayBucketConfig): Promise<void> {
        return this.call<unknown>({ bucket: name }, (cb) => this.raw.createBucket(name, cfg, {}, cb)).then(() => undefined);
    }

    updateBucket(name: string, cfg: MorayBucketConfig): Promise<void> {
        return this.call<unknown>({ bucket: name }, (cb) => this.raw.updateBucket(name, cfg, {}, cb)).then(() => undefined);
    }

    /** Deletes a bucket; false when it did not exist. */
    async deleteBucket(name: string): Promise<boolean> {
        try {
            await this.callRaw<unknown>((cb) => this.raw.deleteBucket(name, {}, cb));
            return true;
        } catch (err) {
            if (serverErrorOf(err)?.name === 'BucketNotFoundError') {
                return false;
            }
            throw translateError(err, { bucket: name });
        }
    }

    async listBuckets(): Promise<string[]> {
        const list = await this.call<RawBucket[]>({}, (cb) => this.raw.listBuckets({}, cb));
        return list.map((b) => b.name);
    }

    // ---- objects

    async putObject(bucket: string, key: string, value: JsonObject, opts: WriteOptions = {}): Promise<{ etag: string }> {
        const o = opts.etag === undefined ? {} : { etag: opts.etag };
        const res = await this.call<{ etag?: string }>({ bucket, key, expected: opts.etag }, (cb) => this.raw.putObject(bucket, key, value, o, cb));
        if (typeof res?.etag !== 'string') {
            throw new StoreUnavailableError(`moray putObject ${bucket}/${key}: reply has no etag`);
        }
        return { etag: res.etag };
    }

    async getObject(bucket: string, key: string): Promise<MorayObject | null> {
        try {
            return await this.callRaw<MorayObject>((cb) => this.raw.getObject(bucket, key, {}, cb));
        } catch (err) {
            if (serverErrorOf(err)?.name === 'ObjectNotFoundError') {
                return null;
            }
            throw translateError(err, { bucket, key });
        }
    }

    delObject(bucket: string, key: string, opts: WriteOptions = {}): Promise<void> {
        const o = opts.etag === undefined ? {} : { etag: opts.etag };
        return this.call<unknown>({ bucket, key, expected: opts.etag }, (cb) => this.raw.deleteObject(bucket, key, o, cb)).then(() => undefined);
    }

    /** Streams matching records. Always give `limit` (Moray's default is 1000). */
    async *findObjects(bucket: string, filter: string, opts: FindOptions = {}): AsyncGenerator<MorayObject> {
        if (this.closed) {
            throw new StoreUnavailableError('moray client is closed');
        }
        const queue: MorayObject[] = [];
        let finished = false;
        let failure: unknown = null;
        let wake: (() => void) | null = null;
        const poke = (): void => {
            const w = wake;
            wake = null;
            w?.();
        };
        const res = this.raw.findObjects(bucket, filter, { ...opts });
        res.on('record', (r: MorayObject) => {
            queue.push(r);
            poke();
        });
        res.on('error', (err: Error) => {
            failure = err;
            finished = true;
            poke();
        });
        res.on('end', () => {
            finished = true;
            poke();
        });
        for (;;) {
            const next = queue.shift();
            if (next) {
                yield next;
                continue;
            }
            if (failure) {
                throw translateError(failure, { bucket });
            }
            if (finished) {
                return;
            }
            await new Promise<void>((resolve, reject) => {
                const timer =
                    this.requestTimeoutMs > 0
                        ? setTimeout(() => {
                              wake = null;
                              reject(new StoreUnavailableError(`moray findObjects ${bucket}: no reply after ${this.requestTimeoutMs} ms`));
                          }, this.requestTimeoutMs)
                        : undefined;
                wake = () => {
                    clearTimeout(timer);
                    resolve();
                };
            });
        }
    }

    /** findObjects, collected. */
    async findAll(bucket: string, filter: string, opts: FindOptions = {}): Promise<MorayObject[]> {
        const out: MorayObject[] = [];
        for await (const r of this.findObjects(bucket, filter, opts)) {
            out.push(r);
        }
        return out;
    }

    /** All operations in one transaction; `ctx` names the object an error is about when Moray does not. */
    batch(requests: MorayBatchRequest[], ctx: ErrorContext = {}): Promise<void> {
        const reqs = requests.map((r) => {
            const o = r.options?.etag === undefined ? {} : { etag: r.options.etag };
            return r.operation === 'put'
                ? { operation: 'put', bucket: r.bucket, key: r.key, value: r.value, options: o }
                : { operation: 'delete', bucket: r.bucket, key: r.key, options: o };
        });
        return this.call<unknown>(ctx, (cb) => this.raw.batch(reqs, {}, cb)).then(() => undefined);
    }

    async reindexObjects(bucket: string, count: number): Promise<ReindexResult> {
        const r = await this.call<ReindexResult>({ bucket }, (cb) => this.raw.reindexObjects(bucket, count, {}, cb));
        return { processed: Number(r.processed ?? 0), remaining: r.remaining === undefined ? undefined : Number(r.remaining) };
    }

    /** Deep ping (checks the database behind Moray). */
    ping(): Promise<void> {
        return this.call<unknown>({}, (cb) => this.raw.ping({ deep: true }, cb)).then(() => undefined);
    }

    close(): Promise<void> {
        if (this.closed) {
            return Promise.resolve();
        }
        this.closed = true;
        return new Promise((resolve) => {
            const timer = setTimeout(resolve, 2000);
            this.raw.once('close', () => {
                clearTimeout(timer);
                resolve();
            });
            this.raw.close();
        });
    }
}

/** A client that connects in the background (requests fail fast until it has). */
export function createMorayClient(opts: MorayConnectOptions): MorayClient {
    const log = opts.log ?? quietLogger();
    const o: Record<string, unknown> = { log };
    if (opts.srvDomain !== undefined) {
        o.srvDomain = opts.srvDomain;
    } else {
        if (opts.host === undefined) {
            throw new TypeError('moray: host or srvDomain is required');
        }
        o.host = opts.host;
        if (opts.port !== undefined) {
            o.port = opts.port;
        }
    }
    if (opts.cueballOptions) {
        o.cueballOptions = opts.cueballOptions;
    } else {
        o.connectTimeout = opts.connectTimeoutMs ?? 1000;
        // 2.1.2's policy: 100 ms doubling to 6 s. Once the attempts are used
        // up cueball keeps retrying a dead backend every maxTimeout, forever.
        o.retry = { retries: 10, minTimeout: 100, maxTimeout: 6000, ...opts.retry };
    }
    return new MorayClient(moray.createClient(o), { requestTimeoutMs: opts.requestTimeoutMs });
}

/** A client with a connection, or StoreUnavailableError after connectTimeoutMs (default 10 s). */
export async function connectMoray(opts: MorayConnectOptions): Promise<MorayClient> {
    const client = createMorayClient(opts);
    try {
        await client.waitConnected(opts.connectTimeoutMs ?? 10_000);
    } catch (err) {
        await client.close();
        throw err;
    }
    return client;
}
