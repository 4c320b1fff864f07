// Shared plumbing for the downstream fakes: a real node:http server on
// 127.0.0.1:0 with a tiny router, restify-style error bodies, request
// recording and failure injection (failNext, latencyMs, hang, down/up).

import { setMaxListeners } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FakeRequest {
    method: string;
    /** Path without the query string. */
    path: string;
    params: Record<string, string>;
    query: Record<string, string>;
    body: unknown;
    headers: http.IncomingHttpHeaders;
    routeKey: string;
}

export interface FakeResponse {
    status: number;
    /** JSON-encoded unless undefined (then no body). */
    body?: unknown;
    headers?: Record<string, string>;
}

export type FakeHandler = (req: FakeRequest) => FakeResponse | Promise<FakeResponse>;

export interface RecordedRequest {
    method: string;
    path: string;
    /** Path with query string, as sent. */
    url: string;
    query: Record<string, string>;
    body: unknown;
    headers: http.IncomingHttpHeaders;
    /** `METHOD /pattern` of the matched route; undefined for 404/405. */
    routeKey: string | undefined;
    /** The client's port: equal ports on two requests = one kept-alive connection. */
    remotePort: number | undefined;
}

/** Thrown by handlers to answer a restify-style error `{code, message}`. */
export class FakeHttpError extends Error {
    readonly status: number;
    readonly body: unknown;

    constructor(status: number, code: string, message: string, extra: Record<string, unknown> = {}) {
        super(message);
        this.status = status;
        this.body = { code, message, ...extra };
    }

    /** An error with an arbitrary body (e.g. a bare JSON string). */
    static raw(status: number, body: unknown): FakeHttpError {
        const e = new FakeHttpError(status, '', '');
        (e as { body: unknown }).body = body;
        return e;
    }
}

interface Route {
    method: string;
    pattern: string;
    parts: string[];
    key: string;
    handler: FakeHandler;
}

export interface FakeHttpServerOptions {
    /** For messages, e.g. 'CNAPI'. */
    name: string;
    /** Headers on every response (e.g. `Server: cnapi/1.26.4`). */
    headers?: Record<string, string>;
    log?: FakeLog | undefined;
}

/** Optional logger (a bunyan Logger fits): each request is logged at debug. */
export interface FakeLog {
    debug(obj: object, msg?: string): void;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isoNow(): string {
    return new Date().toISOString();
}

export function clone<T>(v: T): T {
    return structuredClone(v);
}

export class FakeHttpServer {
    readonly name: string;
    /** Every request received, in order (including 404s and injected failures). */
    readonly requests: RecordedRequest[] = [];
    /** Delay before answering each request. */
    latencyMs = 0;
    url = '';
    port = 0;

    private readonly server: http.Server;
    private readonly routes: Route[] = [];
    private readonly failures = new Map<string, FakeResponse[]>();
    private readonly hungResponses = new Set<http.ServerResponse>();
    private readonly sockets = new Set<Socket>();
    private readonly defaultHeaders: Record<string, string>;
    private readonly log: FakeLog | undefined;
    private hangAll = false;
    private readonly hangKeys = new Set<string>();
    private isUp = false;
    private closed = false;
    /** Aborted on close(): background work (tasks, jobs) stops. */
    protected readonly life = lifeController();

    constructor(opts: FakeHttpServerOptions) {
        this.name = opts.name;
        this.defaultHeaders = opts.headers ?? {};
        this.log = opts.log;
        this.server = http.createServer((req, res) => {
            this.dispatch(req, res).catch((err: unknown) => {
                if (!res.headersSent) {
                    this.send(res, { status: 500, body: { code: 'InternalError', message: String(err) } });
                }
            });
        });
        this.server.on('connection', (s: Socket) => {
            this.sockets.add(s);
            s.on('close', () => this.sockets.delete(s));
        });
    }

    // ---- lifecycle

    /** Listens on 127.0.0.1 (port 0 the first time, the same port afterwards). */
    async start(): Promise<this> {
        await this.up();
        return this;
    }

    /** Listens again on the same port after down(). */
    async up(): Promise<void> {
        if (this.isUp || this.closed) {
            return;
        }
        await new Promise<void>((resolve, reject) => {
            const onError = (err: Error): void => reject(err);
            this.server.once('error', onError);
            this.server.listen(this.port, '127.0.0.1', () => {
                this.server.off('error', onError);
                resolve();
            });
        });
        this.port = (this.server.address() as AddressInfo).port;
        this.url = `http://127.0.0.1:${this.port}`;
        this.isUp = true;
    }

    /** Stops listening and drops every connection: new requests get ECONNREFUSED. */
    async down(): Promise<void> {
        if (!this.isUp) {
            return;
        }
        this.isUp = false;
        const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
        this.dropConnections();
        await closed;
    }

    async close(): Promise<void> {
        if (this.closed) {
            return;
        }
        this.life.abort();
        await this.down();
        this.closed = true;
    }

    // ---- failure injection

    /**
     * The next request to `routeKey` (e.g. `'POST /servers/:uuid/install-agent'`)
     * gets `status` and `body` (default `{code, message}`) instead of the
     * handler. Calls queue up: call twice to fail the next two.
     */
    failNext(routeKey: string, status: number, body?: unknown): void {
        this.assertRouteKey(routeKey);
        const list = this.failures.get(routeKey) ?? [];
        list.push({
            status,
            body: body ?? {
                code: status >= 500 ? 'InternalError' : 'InvalidArgument',
                message: `injected ${status} failure on ${routeKey}`,
            },
        });
        this.failures.set(routeKey, list);
    }

    /** Requests to `routeKey` (or every request) are never answered, until unhang(). */
    hang(routeKey?: string): void {
        if (routeKey === undefined) {
            this.hangAll = true;
        } else {
            this.assertRouteKey(routeKey);
            this.hangKeys.add(routeKey);
        }
    }

    /** Stops hanging; requests already hung are dropped (their sockets destroyed). */
    unhang(): void {
        this.hangAll = false;
        this.hangKeys.clear();
        for (const res of this.hungResponses) {
            res.socket?.destroy();
        }
        this.hungResponses.clear();
    }

    /** The recorded requests that matched `routeKey`. */
    requestsTo(routeKey: string): RecordedRequest[] {
        return this.requests.filter((r) => r.routeKey === routeKey);
    }

    clearRequests(): void {
        this.requests.length = 0;
    }

    get routeKeys(): string[] {
        return this.routes.map((r) => r.key);
    }

    // ---- routes

    route(method: string, pattern: string, handler: FakeHandler): void {
        const m = method.toUpperCase();
        this.routes.push({ method: m, pattern, parts: splitPath(pattern), key: `${m} ${pattern}`, handler });
    }

    /** Resolves after `ms`, rejects (AbortError) if the fake is closed first. */
    protected delay(ms: number): Promise<void> {
        return sleep(ms, undefined, { signal: this.life.signal });
    }

    /** Runs background work; ends quietly when the fake closes. */
    protected background(work: () => Promise<void>): void {
        work().catch((err: unknown) => {
            if (!this.life.signal.aborted) {
                process.emitWarning(`${this.name} fake: background work failed: ${String(err)}`);
            }
        });
    }

    protected get closing(): boolean {
        return this.life.signal.aborted;
    }

    // ---- internals

    private assertRouteKey(routeKey: string): void {
        if (!this.routes.some((r) => r.key === routeKey)) {
            throw new Error(`${this.name} fake has no route "${routeKey}" (routes: ${this.routeKeys.join(', ')})`);
        }
    }

    private dropConnections(): void {
        this.server.closeAllConnections();
        for (const s of this.sockets) {
            s.destroy();
        }
        this.sockets.clear();
        this.hungResponses.clear();
    }

    private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const method = (req.method ?? 'GET').toUpperCase();
        const u = new URL(req.url ?? '/', 'http://fake');
        const path = u.pathname;
        const query: Record<string, string> = {};
        for (const [k, v] of u.searchParams) {
            query[k] = v;
        }
        const text = await readBody(req);
        const ctype = String(req.headers['content-type'] ?? '');

        const parts = splitPath(path);
        let matched: { route: Route; params: Record<string, string> } | undefined;
        const allowed: string[] = [];
        for (const route of this.routes) {
            const params = matchParts(route.parts, parts);
            if (!params) {
                continue;
            }
            if (route.method === method) {
                matched = { route, params };
                break;
            }
            allowed.push(route.method);
        }

        let body: unknown = undefined;
        let badJson: string | undefined;
        if (text.length > 0) {
            if (/json/i.test(ctype) || ctype === '') {
                try {
                    body = JSON.parse(text);
                } catch (err) {
                    badJson = err instanceof Error ? err.message : String(err);
                }
            } else if (/x-www-form-urlencoded/i.test(ctype)) {
                body = Object.fromEntries(new URLSearchParams(text));
            } else {
                body = text;
            }
        }

        this.requests.push({
            method,
            path,
            url: req.url ?? path,
            query,
            body,
            headers: req.headers,
            routeKey: matched?.route.key,
            remotePort: req.socket.remotePort,
        });
        this.log?.debug({ fake: this.name, method, url: req.url, route: matched?.route.key }, 'fake request');

        if (this.hangAll || (matched && this.hangKeys.has(matched.route.key))) {
            this.hungResponses.add(res);
            res.on('close', () => this.hungResponses.delete(res));
            return;
        }
        if (this.latencyMs > 0) {
            try {
                await this.delay(this.latencyMs);
            } catch {
                return;
            }
        }

        if (!matched) {
            if (allowed.length > 0) {
                this.send(res, {
                    status: 405,
                    body: { code: 'MethodNotAllowed', message: `${method} is not allowed` },
                    headers: { allow: allowed.join(', ') },
                });
            } else {
                this.send(res, { status: 404, body: { code: 'ResourceNotFound', message: `${path} does not exist` } });
            }
            return;
        }
        if (badJson !== undefined) {
            this.send(res, { status: 400, body: { code: 'InvalidContent', message: `Invalid JSON: ${badJson}` } });
            return;
        }
        const injected = this.failures.get(matched.route.key)?.shift();
        if (injected) {
            this.send(res, injected);
            return;
        }

        let out: FakeResponse;
        try {
            out = await matched.route.handler({
                method,
                path,
                params: matched.params,
                query,
                body,
                headers: req.headers,
                routeKey: matched.route.key,
            });
        } catch (err) {
            if (err instanceof FakeHttpError) {
                out = { status: err.status, body: err.body };
            } else {
                out = { status: 500, body: { code: 'InternalError', message: String(err) } };
            }
        }
        this.send(res, out);
    }

    /** Answers a route-less 404, exactly as an unknown path would. */
    protected notFoundPath(path: string): FakeResponse {
        return { status: 404, body: { code: 'ResourceNotFound', message: `${path} does not exist` } };
    }

    private send(res: http.ServerResponse, out: FakeResponse): void {
        if (res.destroyed || res.writableEnded) {
            return;
        }
        const payload = out.body === undefined ? '' : JSON.stringify(out.body);
        const headers: Record<string, string> = { ...this.defaultHeaders };
        if (payload.length > 0) {
            headers['content-type'] = 'application/json';
        }
        headers['content-length'] = String(Buffer.byteLength(payload));
        Object.assign(headers, out.headers ?? {});
        res.writeHead(out.status, headers);
        res.end(payload);
    }
}

function splitPath(p: string): string[] {
    return p.split('/').filter((s) => s.length > 0);
}

function matchParts(pattern: string[], actual: string[]): Record<string, string> | null {
    if (pattern.length !== actual.length) {
        return null;
    }
    const params: Record<string, string> = {};
    for (let i = 0; i < pattern.length; i++) {
        const p = pattern[i] ?? '';
        const a = actual[i] ?? '';
        if (p.startsWith(':')) {
            params[p.slice(1)] = decodeURIComponent(a);
        } else if (p !== a) {
            return null;
        }
    }
    return params;
}

function readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        req.on('error', reject);
    });
}

/** A plain HTTP request from a fake to another server (e.g. a fake CN to SAPI). */
export function rawRequest(
    url: string,
    opts: { method?: string; headers?: Record<string, string>; body?: unknown; timeoutMs?: number; signal?: AbortSignal },
): Promise<{ status: number; body: unknown; text: string }> {
    return new Promise((resolve, reject) => {
        const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
        const headers: Record<string, string> = { ...(opts.headers ?? {}) };
        if (payload !== undefined) {
            headers['content-type'] = 'application/json';
            headers['content-length'] = String(Buffer.byteLength(payload));
        }
        const reqOpts: http.RequestOptions = { method: opts.method ?? 'GET', headers, agent: false };
        if (opts.signal) reqOpts.signal = opts.signal;
        const req = http.request(url, reqOpts, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let body: unknown;
                try {
                    body = text ? JSON.parse(text) : undefined;
                } catch {
                    body = text;
                }
                resolve({ status: res.statusCode ?? 0, body, text });
            });
        });
        req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error('request timed out')));
        req.on('error', reject);
        req.end(payload);
    });
}

/** The fake's lifetime signal: every pending delay listens to it. */
function lifeController(): AbortController {
    const c = new AbortController();
    setMaxListeners(0, c.signal);
    return c;
}
