// Route plumbing shared by every endpoint file: the merged parameter bag,
// the Accept-Version view, ETag headers, and the error wrapper.

import { createRequire } from 'node:module';

import type { Request, Response, Server } from 'restify';

import { REQUEST_SCHEMAS } from '../../schemas/requests.js';
import { closest } from '../config.js';
import { invalidArgument, invalidVersion, isSapiError, toApiError } from '../errors.js';
import type { ReqInfo } from '../model/context.js';
import type { Dict, Instance, Service } from '../model/types.js';
import { StoreError, StoreUnavailableError } from '../stor/errors.js';

export type Method = 'get' | 'head' | 'post' | 'put' | 'del';

export interface RouteDef {
    method: Method;
    path: string;
    name: string;
    /**
     * The query and body keys a route SAPI 2.1.2 did not have accepts: any
     * other is refused (409, naming it). Routes without it keep 2.1.2's
     * tolerance: unknown keys are ignored, and noted in the request log.
     */
    accepts?: readonly string[];
    /** Requests that deploy may run long: the socket timeout for them (ms). */
    socketTimeoutMs?: number;
}

/**
 * A route that declares its input: the request's parameters are coerced and
 * checked once, by `input`, before the handler, which gets the result.
 */
export interface RouteWithInput<I> extends RouteDef {
    input: (params: Dict) => I;
}

export type Handler<I = undefined> = (req: Request, res: Response, info: ReqInfo, input: I) => Promise<void>;

/** The routes mounted on each server, as declared. */
const mounted = new WeakMap<Server, RouteDef[]>();

/** Every route mounted on `server` (the docs check, the store-outage sweep). */
export function routesOf(server: Server): readonly RouteDef[] {
    return mounted.get(server) ?? [];
}

/**
 * Mount one route as declared: its strict or tolerant keys, its socket
 * timeout, the API view, and the one error path; then the handler.
 */
export function mount(server: Server, def: RouteDef, handler: Handler): void;
export function mount<I>(server: Server, def: RouteWithInput<I>, handler: Handler<I>): void;
export function mount<I>(server: Server, def: RouteDef & { input?: (params: Dict) => I }, handler: Handler<I | undefined>): void {
    const list = mounted.get(server) ?? [];
    mounted.set(server, list);
    list.push(def);
    const known = def.accepts ? new Set(def.accepts) : knownKeys(def.name);
    const fn = async (req: Request, res: Response): Promise<void> => {
        let info: ReqInfo;
        try {
            if (def.socketTimeoutMs !== undefined) {
                req.connection?.setTimeout(def.socketTimeoutMs);
            }
            if (known) {
                checkKeys(req, def, known);
            }
            info = { v2: apiView(req), reqId: String(req.getId()), log: req.log };
            await handler(req, res, info, def.input ? def.input(paramsOf(req)) : undefined);
        } catch (err) {
            sendError(req, res, err);
        }
    };
    server[def.method]({ path: def.path, name: def.name }, fn);
}

/** The keys a 2.1.2 route's request schema names (null: no schema, nothing to note). */
function knownKeys(name: string): ReadonlySet<string> | null {
    const schema = (REQUEST_SCHEMAS as Record<string, { properties?: object }>)[name];
    return schema?.properties ? new Set(Object.keys(schema.properties)) : null;
}

/** Request keys ignored by a tolerant route, for the request log line. */
export const IGNORED_KEYS = Symbol('ignoredKeys');

function checkKeys(req: Request, def: RouteDef, known: ReadonlySet<string>): void {
    const given = [...Object.keys(isObj(req.query) ? (req.query as Dict) : {}), ...Object.keys(isObj(req.body) ? (req.body as Dict) : {})];
    const unknown = given.filter((k) => !known.has(k));
    if (unknown.length === 0) {
        return;
    }
    if (!def.accepts) {
        (req as unknown as Record<symbol, string[]>)[IGNORED_KEYS] = [...new Set(unknown)];
        return;
    }
    const k = unknown[0] as string;
    const best = closest(k, [...known]);
    const hint = best === undefined ? '' : ` (did you mean "${best}"?)`;
    const accepted = def.accepts.length > 0 ? `; ${def.name} takes ${def.accepts.join(', ')}` : `; ${def.name} takes none`;
    throw invalidArgument(`unknown parameter "${k}"${hint}${accepted}`);
}

/**
 * The one place a failure becomes an answer: SAPI errors as they are, and
 * anything else (a store error the model did not translate, a bug) through
 * toApiError, so a store that is down is 503 StoreUnavailable on every route.
 */
export function sendError(req: Request, res: Response, err: unknown): void {
    const e = toApiError(err);
    if (isSapiError(err)) {
        if (e.statusCode === 501) {
            // Not a fault: this SAPI is configured without what the request needs.
            req.log.warn({ code: e.restCode, message: e.message }, 'request needs what this SAPI is not configured for');
        } else if (e.statusCode >= 500) {
            req.log.error({ err: e, cause: e.cause }, 'request failed');
        }
    } else if (err instanceof StoreUnavailableError) {
        req.log.error({ err }, 'store unavailable');
    } else if (err instanceof StoreError) {
        req.log.error({ err }, 'store error in handler');
    } else {
        req.log.error({ err }, 'unexpected error in handler');
    }
    if (res.headersSent) {
        // A streamed response cannot change its status any more.
        res.destroy();
        return;
    }
    res.send(e.statusCode, e);
}

/** One parameter bag: a name given twice takes path param > query param > body field. */
export function paramsOf(req: Request): Dict {
    const body = isObj(req.body) ? (req.body as Dict) : {};
    const query = isObj(req.query) ? (req.query as Dict) : {};
    const path = isObj(req.params) ? (req.params as Dict) : {};
    return { ...body, ...query, ...path };
}

function isObj(v: unknown): boolean {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- Accept-Version (absent means ~1; the v2 view shows services' and instances' `type`)

const V1 = '1.0.0';
const V2 = '2.0.0';

/** What a range selects: the v2 view, the v1 view, or neither (null); by range, as clients send a handful. */
const views = new Map<string, boolean | null>([
    ['~1', false],
    ['~2', true],
    ['*', true],
]);
const VIEWS_KEPT = 256;
const require = createRequire(import.meta.url);

function viewOf(range: string): boolean | null {
    const known = views.get(range);
    if (known !== undefined) {
        return known;
    }
    // semver is loaded the first time a range other than the usual ones comes.
    const semver = require('semver') as typeof import('semver');
    let v1 = false;
    let v2 = false;
    try {
        v1 = semver.satisfies(V1, range);
        v2 = semver.satisfies(V2, range);
    } catch {
        // an unparsable range satisfies nothing
    }
    const view = v1 || v2 ? v2 : null;
    if (views.size < VIEWS_KEPT) {
        views.set(range, view);
    }
    return view;
}

/** True for the v2 view; throws 400 InvalidVersion for a range neither version satisfies. */
export function apiView(req: Request): boolean {
    const header = req.headers['accept-version'];
    const range = (Array.isArray(header) ? header[0] : header)?.trim() || '~1';
    const view = viewOf(range);
    if (view === null) {
        throw invalidVersion(`${range} is not supported by ${req.method} ${req.getPath()}`);
    }
    return view;
}

// ---- serialization (services and instances as a fixed key set; `type` only in the v2 view)

export function serializeService(svc: Service, v2: boolean): Dict {
    const out: Dict = {
        uuid: svc.uuid,
        name: svc.name,
        application_uuid: svc.application_uuid,
        params: svc.params,
        metadata: svc.metadata,
        manifests: svc.manifests,
        master: svc.master,
    };
    if (v2) {
        out.type = svc.type;
    }
    return dropUndefined(out);
}

/**
 * What serializeInstance leaves out of a stored instance (the index
 * mirrors, the migration marker, and `type` in the v1 view): the JSON fast
 * path removes exactly these keys.
 */
export function instanceOmittedKeys(v2: boolean): string[] {
    return ['server_uuid', 'image_uuid', 'exists', ...(v2 ? [] : ['type'])];
}

export function serializeInstance(inst: Instance, v2: boolean, jobUuid?: string): Dict {
    const out: Dict = {
        uuid: inst.uuid,
        service_uuid: inst.service_uuid,
        params: inst.params,
        metadata: inst.metadata,
        manifests: inst.manifests,
        master: inst.master,
        job_uuid: jobUuid,
    };
    if (v2) {
        out.type = inst.type;
    }
    return dropUndefined(out);
}

function dropUndefined(o: Dict): Dict {
    return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

// ---- ETags: sent quoted; If-Match makes a write conditional so no update is lost

export function quoteEtag(tag: string): string {
    return `"${tag}"`;
}

/** Parse If-Match / If-None-Match: quoted, bare, W/-prefixed, lists, `*`. */
export function parseEtagList(header: string | string[] | undefined): string[] | undefined {
    if (header === undefined) {
        return undefined;
    }
    const raw = Array.isArray(header) ? header.join(',') : header;
    return raw
        .split(',')
        .map((t) =>
            t
                .trim()
                .replace(/^W\//i, '')
                .replace(/^"(.*)"$/, '$1'),
        )
        .filter((t) => t.length > 0);
}

export function ifMatchOf(req: Request): string[] | undefined {
    return parseEtagList(req.headers['if-match']);
}

export const RESOURCE_COUNT_HEADER = 'x-joyent-resource-count';

/** Send a list: one page, or a chunked stream of every item. */
export async function sendList<T>(
    res: Response,
    result: { total: number; items?: T[]; stream?: AsyncIterable<T[]>; json?: string[]; jsonStream?: AsyncIterable<string[]> },
    serialize: (item: T) => unknown,
): Promise<void> {
    res.setHeader(RESOURCE_COUNT_HEADER, String(result.total));
    if (result.items) {
        res.send(200, result.items.map(serialize));
        return;
    }
    if (result.json) {
        const body = `[${result.json.join(',')}]`;
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    let first = true;
    res.write('[');
    const chunks: AsyncIterable<string[]> = result.jsonStream ?? serializeChunks(result.stream ?? [], serialize);
    for await (const chunk of chunks) {
        if (chunk.length === 0) {
            continue;
        }
        const text = chunk.join(',');
        const ok = res.write(first ? text : `,${text}`);
        first = false;
        if (!ok) {
            await new Promise<void>((resolve) => {
                const done = (): void => {
                    res.off('drain', done);
                    res.off('close', done);
                    resolve();
                };
                res.on('drain', done);
                res.on('close', done);
            });
            if (res.destroyed) {
                return;
            }
        }
    }
    res.end(']');
}

async function* serializeChunks<T>(stream: AsyncIterable<T[]> | Iterable<T[]>, serialize: (item: T) => unknown): AsyncIterable<string[]> {
    for await (const chunk of stream) {
        yield chunk.map((i) => JSON.stringify(serialize(i)));
    }
}
