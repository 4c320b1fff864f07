// createServer(deps): restify with SAPI's headers, parsers, error bodies
// and audit log; every route is mounted from lib/endpoints.
//
// restify's parts are loaded one by one (server, router and the two
// parsers used here), not through its index: the index also loads every
// other plugin (request signing with its crypto, static files, throttles,
// audit), pino for a default logger, and the formatters again, which
// together were a good part of a cold start. The server is built as the
// index's createServer builds it.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

import type { Request, Response, Server, ServerOptions } from 'restify';
import RestifyServer from 'restify/lib/server.js';
import Router from 'restify/lib/router.js';
import bodyParser from 'restify/lib/plugins/bodyParser.js';
import queryParser from 'restify/lib/plugins/query.js';

import { IGNORED_KEYS } from './endpoints/common.js';
import { mountAll } from './endpoints/index.js';
import { methodNotAllowed, notFound } from './errors.js';
import type { ServiceHooks } from './endpoints/service-routes.js';
import type { Ctx } from './model/context.js';
import type { RolloutManager } from './rollout/runner.js';

export const SERVER_HEADER = 'sapi/2.1.2';
export const API_VERSION = '3.0.0';

export interface ServerDeps extends ServiceHooks {
    ctx: Ctx;
    rollouts: RolloutManager;
    /** Called after each request (metrics). */
    onRequestDone?: (route: string, method: string, status: number, ms: number) => void;
}

interface TimedRequest extends Request {
    _sapiStart?: bigint;
}

/**
 * restify.createServer(options), for options that name a logger and leave
 * uncaught exceptions alone (the index's createServer then only adds the
 * router, built from the same options).
 */
function restifyServer(options: ServerOptions & { log: object; handleUncaughtExceptions: false }): Server {
    const opts = { ...options };
    return new RestifyServer({ ...opts, router: new Router(opts) });
}

export function createServer(deps: ServerDeps): Server {
    const { ctx } = deps;
    const server = restifyServer({
        name: 'sapi',
        log: ctx.log,
        handleUncaughtExceptions: false,
        ignoreTrailingSlash: true,
    });
    const host = hostname();

    server.pre((req: Request, res: Response, next: () => void) => {
        (req as TimedRequest)._sapiStart = process.hrtime.bigint();
        const given = req.headers['x-request-id'] ?? req.headers['request-id'];
        const id = (Array.isArray(given) ? given[0] : given) || randomUUID();
        (req as unknown as { id(v: string): string }).id(id);
        res.setHeader('Server', SERVER_HEADER);
        res.setHeader('x-request-id', id);
        res.setHeader('x-server-name', host);
        res.setHeader('x-sapi-version', API_VERSION);
        next();
    });
    server.use(queryParser({ mapParams: false }));
    server.use(
        bodyParser({
            mapParams: false,
            maxBodySize: ctx.config.maxBodyBytes,
            multipartFileHandler: () => undefined,
        }),
    );

    // restify's own 404/405 bodies, in SAPI 2.1.2's words.
    server.on('NotFound', (req: Request, _res: Response, err: Error & { toJSON?: () => unknown }, cb: () => void) => {
        err.toJSON = () => notFound(`${req.getPath()} does not exist`).toJSON();
        cb();
    });
    server.on('MethodNotAllowed', (req: Request, _res: Response, err: Error & { toJSON?: () => unknown }, cb: () => void) => {
        err.toJSON = () => methodNotAllowed(String(req.method)).toJSON();
        cb();
    });

    server.on('after', (req: Request, res: Response, route: { name?: string } | null) => {
        const start = (req as TimedRequest)._sapiStart;
        const ms = start === undefined ? 0 : Number(process.hrtime.bigint() - start) / 1e6;
        const name = route?.name ?? 'unrouted';
        const ignored = (req as unknown as Record<symbol, string[] | undefined>)[IGNORED_KEYS];
        req.log.info(
            {
                route: name,
                method: req.method,
                url: req.url,
                status: res.statusCode,
                latency: Math.round(ms * 100) / 100,
                req_id: req.getId(),
                remote: req.socket?.remoteAddress,
                user_agent: req.headers['user-agent'],
                ...(ignored ? { ignored_keys: ignored } : {}),
            },
            'handled: %d',
            res.statusCode,
        );
        deps.onRequestDone?.(name, req.method ?? '', res.statusCode, ms);
    });

    mountAll(server, ctx, deps.rollouts, deps);
    return server;
}
