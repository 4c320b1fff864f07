// Typed promise wrapper over the npm `moray` client (callbacks and event
// emitters) that throws only lib/stor/errors.ts types (error-map.ts): one
// method per Moray call, each failing after a reply timeout, findObjects as
// an async generator. How a client is made and connected is client.ts's.

import { randomUUID } from 'node:crypto';

import type { IndexDef } from '../buckets.js';
import { StoreUnavailableError } from '../errors.js';
import type { JsonObject } from '../store.js';
import { serverErrorOf, translateError, type ErrorContext } from './error-map.js';

// ---- the untyped npm client, as much of it as we use

type Callback<R = unknown> = (err: Error | null | undefined, res?: R) => void;

interface RawEmitter {
    on(event: string, fn: (arg: never) => void): unknown;
}

export interface RawMorayClient {
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

// ---- public types

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

/** Batch requests as the moray client takes them (fresh objects: it adds `_value` to each). */
function batchArgs(requests: MorayBatchRequest[]): object[] {
    return requests.map((r) => {
        const o = r.options?.etag === undefined ? {} : { etag: r.options.etag };
        return r.operation === 'put'
            ? { operation: 'put', bucket: r.bucket, key: r.key, value: r.value, options: o }
            : { operation: 'delete', bucket: r.bucket, key: r.key, options: o };
    });
}

// ---- the wrapper

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
        const res = await this.call<{ etag?: string }>({ bucket, key, expected: opts.etag }, (cb) =>
            this.raw.putObject(bucket, key, value, { ...o, req_id: randomUUID() }, cb),
        );
        if (typeof res?.etag !== 'string') {
            throw new StoreUnavailableError(`moray putObject ${bucket}/${key}: reply has no etag`);
        }
        return { etag: res.etag };
    }

    async getObject(bucket: string, key: string): Promise<MorayObject | null> {
        try {
            return await this.callRaw<MorayObject>((cb) => this.raw.getObject(bucket, key, { req_id: randomUUID() }, cb));
        } catch (err) {
            if (serverErrorOf(err)?.name === 'ObjectNotFoundError') {
                return null;
            }
            throw translateError(err, { bucket, key });
        }
    }

    delObject(bucket: string, key: string, opts: WriteOptions = {}): Promise<void> {
        const o = opts.etag === undefined ? {} : { etag: opts.etag };
        return this.call<unknown>({ bucket, key, expected: opts.etag }, (cb) => this.raw.deleteObject(bucket, key, { ...o, req_id: randomUUID() }, cb)).then(
            () => undefined,
        );
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
        const res = this.raw.findObjects(bucket, filter, { ...opts, req_id: randomUUID() });
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
        return this.call<unknown>(ctx, (cb) => this.raw.batch(batchArgs(requests), { req_id: randomUUID() }, cb)).then(() => undefined);
    }

    /**
     * All operations in one transaction, answering Moray's reply (`etags`:
     * a `{bucket, key, etag}` per put); rejects with the moray client's own
     * error, so that the caller can see whether the server answered it
     * (serverErrorOf) and which object it names.
     */
    batchReply(requests: MorayBatchRequest[]): Promise<unknown> {
        return this.callRaw<unknown>((cb) => this.raw.batch(batchArgs(requests), { req_id: randomUUID() }, cb));
    }

    /**
     * One batch of Moray's reindex. `no_count`: Moray would otherwise count
     * every row still to do at each call (a query over the whole bucket per
     * batch); nothing here needs that number.
     */
    async reindexObjects(bucket: string, count: number): Promise<ReindexResult> {
        const r = await this.call<ReindexResult>({ bucket }, (cb) => this.raw.reindexObjects(bucket, count, { no_count: true }, cb));
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
