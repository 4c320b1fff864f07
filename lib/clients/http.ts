// A small typed JSON HTTP client on node:http, shared by the CNAPI, VMAPI,
// IMGAPI and NAPI clients (and sapiadm's SAPI client): keep-alive,
// per-request timeout, x-request-id pass-through, and one mapping from
// transport/HTTP failures to API errors.

import http from 'node:http';
import https from 'node:https';

import { SapiError, downstream, isDownstreamFailure, passedOn } from '../errors.js';

export type ServiceName = 'CNAPI' | 'VMAPI' | 'IMGAPI' | 'NAPI' | 'SAPI';

/** The slice of a bunyan logger the clients use (a bunyan Logger fits). */
export interface ClientLog {
    debug(obj: object, msg?: string): void;
    trace(obj: object, msg?: string): void;
    warn(obj: object, msg?: string): void;
}

export type QueryValue = string | number | boolean | undefined | null;

export interface JsonClientOptions {
    /** Base URL, e.g. `http://cnapi.coal.example.com` (a path prefix is kept). */
    url: string;
    service: ServiceName;
    /** Whole-request timeout (connect + response body). Default 60 s. */
    timeoutMs?: number;
    log?: ClientLog;
    /** Headers sent on every request (e.g. IMGAPI's `Accept-Version: *`). */
    headers?: Record<string, string>;
    /** Maximum sockets per host for the keep-alive agent. Default 50. */
    maxSockets?: number;
    userAgent?: string;
    /** Called after every request (metrics). */
    observe?: (o: DownstreamObservation) => void;
}

/** One downstream call, for metrics: status 0 means no HTTP answer. */
export interface DownstreamObservation {
    service: ServiceName;
    method: string;
    status: number;
    seconds: number;
}

export interface RequestOptions {
    body?: unknown;
    query?: Record<string, QueryValue>;
    headers?: Record<string, string>;
    /** Sent as `x-request-id` (the incoming request's id). */
    reqId?: string | undefined;
    /** Overrides the client's timeout for this request. */
    timeoutMs?: number;
}

export interface JsonResponse<T> {
    status: number;
    body: T;
    headers: http.IncomingHttpHeaders;
}

/** What a downstream service answered when it answered with an error. */
export interface DownstreamInfo {
    service: ServiceName;
    /** The downstream HTTP status (e.g. 404, 412, 500). */
    status: number;
    /** The downstream `code` (restify restCode), if it sent one. */
    code: string | undefined;
    body: unknown;
}

/**
 * A downstream HTTP error response. 4xx keep the downstream status, code and
 * message (so a CNAPI 404 "Server X not found" passes through as a 404);
 * 5xx become 502 DownstreamError. `downstream` says what was actually answered,
 * so callers can branch on `err.downstream.status === 404`.
 */
export class DownstreamHttpError extends SapiError {
    readonly downstream: DownstreamInfo;

    constructor(message: string, info: DownstreamInfo) {
        super(info.status >= 500 ? 'DownstreamError' : passedOn(info.status, info.code), message);
        this.downstream = info;
    }
}

export function isDownstreamHttpError(err: unknown): err is DownstreamHttpError {
    return err instanceof DownstreamHttpError;
}

/** True for a downstream answer with this HTTP status. */
export function isDownstreamStatus(err: unknown, status: number): err is DownstreamHttpError {
    return err instanceof DownstreamHttpError && err.downstream.status === status;
}

/**
 * Errors worth retrying when polling: no answer (503/504) or a downstream
 * 5xx (502). 4xx answers are not transient.
 */
export function isTransientError(err: unknown): boolean {
    return isDownstreamFailure(err);
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);

function errnoCode(err: unknown): string | undefined {
    if (typeof err === 'object' && err !== null && 'code' in err) {
        const code = err.code;
        return typeof code === 'string' ? code : undefined;
    }
    return undefined;
}

function messageOf(err: unknown): string {
    return err instanceof Error ? err.message : String(err);
}

function bodyMessage(body: unknown, fallback: string): string {
    if (typeof body === 'string' && body.length > 0) {
        return body;
    }
    if (typeof body === 'object' && body !== null) {
        const m = (body as { message?: unknown }).message;
        if (typeof m === 'string' && m.length > 0) {
            return m;
        }
        const e = (body as { error?: unknown }).error;
        if (typeof e === 'string' && e.length > 0) {
            return e;
        }
    }
    return fallback;
}

function bodyCode(body: unknown): string | undefined {
    if (typeof body === 'object' && body !== null) {
        const c = (body as { code?: unknown }).code;
        if (typeof c === 'string' && c.length > 0) {
            return c;
        }
    }
    return undefined;
}

/** A query string from a record; undefined/null values are left out. */
export function queryString(query: Record<string, QueryValue> | undefined): string {
    if (!query) {
        return '';
    }
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
        if (v !== undefined && v !== null) {
            qs.append(k, String(v));
        }
    }
    const s = qs.toString();
    return s ? `?${s}` : '';
}

interface RawResponse {
    status: number;
    statusMessage: string;
    headers: http.IncomingHttpHeaders;
    text: string;
}

/** A transport failure before a complete response, with the socket-reuse fact. */
class TransportError extends Error {
    constructor(
        readonly original: unknown,
        readonly reusedSocket: boolean,
        readonly timedOut: boolean,
    ) {
        super(messageOf(original));
    }
}

export class JsonClient {
    readonly service: ServiceName;
    readonly url: string;
    readonly timeoutMs: number;
    private readonly base: URL;
    /** Called after every request (metrics). */
    private readonly observe: ((o: DownstreamObservation) => void) | undefined;
    private readonly agent: http.Agent;
    private readonly transport: typeof http | typeof https;
    private readonly log: ClientLog | undefined;
    private readonly headers: Record<string, string>;

    constructor(opts: JsonClientOptions) {
        this.service = opts.service;
        this.url = opts.url.replace(/\/+$/, '');
        this.base = new URL(this.url);
        this.timeoutMs = opts.timeoutMs ?? 60_000;
        this.log = opts.log;
        this.observe = opts.observe;
        const https_ = this.base.protocol === 'https:';
        this.transport = https_ ? https : http;
        const agentOpts = { keepAlive: true, maxSockets: opts.maxSockets ?? 50 };
        this.agent = https_ ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
        this.headers = {
            accept: 'application/json',
            'user-agent': opts.userAgent ?? 'sapi/3.0.0',
            ...lowerKeys(opts.headers ?? {}),
        };
    }

    get<T>(path: string, opts: RequestOptions = {}): Promise<JsonResponse<T>> {
        return this.request<T>('GET', path, opts);
    }

    post<T>(path: string, opts: RequestOptions = {}): Promise<JsonResponse<T>> {
        return this.request<T>('POST', path, opts);
    }

    put<T>(path: string, opts: RequestOptions = {}): Promise<JsonResponse<T>> {
        return this.request<T>('PUT', path, opts);
    }

    del<T>(path: string, opts: RequestOptions = {}): Promise<JsonResponse<T>> {
        return this.request<T>('DELETE', path, opts);
    }

    /** Drops the kept-alive sockets. The client is unusable afterwards. */
    close(): void {
        this.agent.destroy();
    }

    async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<JsonResponse<T>> {
        const fullPath = `${this.base.pathname.replace(/\/+$/, '')}${path}${queryString(opts.query)}`;
        const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
        const headers: Record<string, string> = { ...this.headers, ...lowerKeys(opts.headers ?? {}) };
        if (opts.reqId) {
            headers['x-request-id'] = opts.reqId;
        }
        let payload: Buffer | undefined;
        if (opts.body !== undefined) {
            payload = Buffer.from(JSON.stringify(opts.body), 'utf8');
            headers['content-type'] = 'application/json';
        }
        if (payload || method === 'POST' || method === 'PUT') {
            headers['content-length'] = String(payload ? payload.length : 0);
        }

        const started = Date.now();
        let raw: RawResponse;
        try {
            raw = await this.send(method, fullPath, headers, payload, timeoutMs);
        } catch (err) {
            // A kept-alive socket the server closed while idle: a read is
            // safe to send again on a fresh connection.
            if (
                err instanceof TransportError &&
                err.reusedSocket &&
                !err.timedOut &&
                RESET_CODES.has(errnoCode(err.original) ?? '') &&
                (method === 'GET' || method === 'HEAD')
            ) {
                const left = Math.max(1, timeoutMs - (Date.now() - started));
                try {
                    raw = await this.send(method, fullPath, headers, payload, left);
                } catch (err2) {
                    throw this.transportError(err2, method, path, timeoutMs);
                }
            } else {
                this.observe?.({ service: this.service, method, status: 0, seconds: (Date.now() - started) / 1000 });
                throw this.transportError(err, method, path, timeoutMs);
            }
        }
        this.observe?.({ service: this.service, method, status: raw.status, seconds: (Date.now() - started) / 1000 });

        this.log?.debug(
            { service: this.service, method, path: fullPath, status: raw.status, ms: Date.now() - started, req_id: opts.reqId },
            'downstream response',
        );
        return this.interpret<T>(method, path, raw);
    }

    private transportError(err: unknown, method: string, path: string, timeoutMs: number): SapiError {
        const te = err instanceof TransportError ? err : new TransportError(err, false, false);
        this.log?.warn({ service: this.service, method, path, err: te.original }, 'downstream request failed');
        if (te.timedOut) {
            return downstream(504, `${this.service} request timed out after ${timeoutMs}ms: ${method} ${path}`, te.original);
        }
        return downstream(503, `${this.service} unavailable: ${te.message}`, te.original);
    }

    private interpret<T>(method: string, path: string, raw: RawResponse): JsonResponse<T> {
        const ctype = String(raw.headers['content-type'] ?? '');
        let body: unknown = undefined;
        if (raw.text.length > 0) {
            try {
                body = JSON.parse(raw.text);
            } catch (err) {
                if (/json/i.test(ctype) && raw.status < 300) {
                    throw downstream(502, `${this.service} sent invalid JSON for ${method} ${path}: ${messageOf(err)}`, err);
                }
                body = raw.text;
            }
        }

        if (raw.status >= 500) {
            const msg = bodyMessage(body, raw.statusMessage || 'no message');
            throw new DownstreamHttpError(`${this.service} error ${raw.status}: ${msg}`, {
                service: this.service,
                status: raw.status,
                code: bodyCode(body),
                body,
            });
        }
        if (raw.status >= 400) {
            const code = bodyCode(body);
            const msg = bodyMessage(body, `${this.service} answered ${raw.status} to ${method} ${path}`);
            throw new DownstreamHttpError(msg, {
                service: this.service,
                status: raw.status,
                code,
                body,
            });
        }
        return { status: raw.status, body: body as T, headers: raw.headers };
    }

    private send(method: string, fullPath: string, headers: Record<string, string>, payload: Buffer | undefined, timeoutMs: number): Promise<RawResponse> {
        return new Promise<RawResponse>((resolve, reject) => {
            let done = false;
            let timedOut = false;
            const req = this.transport.request({
                protocol: this.base.protocol,
                hostname: this.base.hostname,
                port: this.base.port || undefined,
                method,
                path: fullPath,
                headers,
                agent: this.agent,
            });
            const timer = setTimeout(() => {
                timedOut = true;
                req.destroy(new Error(`timed out after ${timeoutMs}ms`));
            }, timeoutMs);
            const fail = (err: unknown): void => {
                if (done) {
                    return;
                }
                done = true;
                clearTimeout(timer);
                reject(new TransportError(err, req.reusedSocket, timedOut));
            };
            req.on('error', fail);
            req.on('response', (res) => {
                const chunks: Buffer[] = [];
                res.on('data', (c: Buffer) => chunks.push(c));
                res.on('error', fail);
                res.on('close', () => {
                    if (!res.complete) {
                        fail(new Error('socket hang up before the response was complete'));
                    }
                });
                res.on('end', () => {
                    if (done) {
                        return;
                    }
                    done = true;
                    clearTimeout(timer);
                    resolve({
                        status: res.statusCode ?? 0,
                        statusMessage: res.statusMessage ?? '',
                        headers: res.headers,
                        text: Buffer.concat(chunks).toString('utf8'),
                    });
                });
            });
            this.log?.trace({ service: this.service, method, path: fullPath }, 'downstream request');
            req.end(payload);
        });
    }
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(h)) {
        out[k.toLowerCase()] = v;
    }
    return out;
}

/**
 * A string field a 2xx answer must carry (e.g. CNAPI's task `id`, VMAPI's
 * `job_uuid`); its absence is a 502 naming the service and the call.
 */
export function requiredString(service: ServiceName, body: unknown, field: string, what: string): string {
    const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[field] : undefined;
    if (typeof v !== 'string' || v.length === 0) {
        throw downstream(502, `${service} answered ${what} without "${field}"`);
    }
    return v;
}

/** Path segment encoding for uuids and names taken from callers. */
export function seg(s: string): string {
    return encodeURIComponent(s);
}

/** Seconds for messages: "1800s", "0.3s", "0.15s". */
export function secondsText(ms: number): string {
    return `${Number((ms / 1000).toFixed(3))}s`;
}

/** What every service client is built from. */
export interface ServiceClientOptions {
    url: string;
    timeoutMs?: number;
    log?: ClientLog;
    /** Keep-alive sockets per host (config maxHttpSockets). */
    maxSockets?: number;
    /** Called after every request (metrics). */
    observe?: (o: DownstreamObservation) => void;
}

/** Base of the typed clients: one keep-alive JsonClient per service. */
export abstract class ServiceClient {
    readonly http: JsonClient;

    protected constructor(service: ServiceName, opts: ServiceClientOptions, headers?: Record<string, string>) {
        const o: JsonClientOptions = { url: opts.url, service };
        if (opts.timeoutMs !== undefined) o.timeoutMs = opts.timeoutMs;
        if (opts.log) o.log = opts.log;
        if (headers) o.headers = headers;
        if (opts.maxSockets !== undefined) o.maxSockets = opts.maxSockets;
        if (opts.observe) o.observe = opts.observe;
        this.http = new JsonClient(o);
    }

    close(): void {
        this.http.close();
    }
}
