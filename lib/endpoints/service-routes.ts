// Service-level routes: ping, mode, log level, cache sync.

import bunyan from 'bunyan';
import type { Server } from 'restify';

import { invalidArgument, toApiError } from '../errors.js';
import type { Ctx } from '../model/context.js';
import { setMode } from '../model/mode.js';
import type { BucketStatus } from '../stor/index.js';
import { mount, paramsOf } from './common.js';

export interface ServiceHooks {
    /** Proto → full migration (Moray backend); none for the embedded store. */
    migrateToFull?: () => Promise<void>;
    /** Local cache refresh (Moray backend). */
    syncCache?: () => Promise<void>;
    /** Moray bucket setup, reindex, data migration (the backfill among them) and sweep progress (Moray backend). */
    storeStatus?: () => Record<string, BucketStatus> | null;
}

export function mountServiceRoutes(server: Server, ctx: Ctx, hooks: ServiceHooks = {}): void {
    const ping = async (): Promise<{ ok: boolean; body: Record<string, unknown> }> => {
        let ok: boolean;
        try {
            ok = await ctx.store.ping();
        } catch {
            ok = false;
        }
        const body: Record<string, unknown> = { mode: ctx.mode.current, storType: ctx.store.name, storAvailable: ok };
        // While Moray buckets are being upgraded: where that work stands.
        const upgrading = Object.entries(hooks.storeStatus?.() ?? {}).filter(([, s]) => s.phase !== 'ready');
        if (upgrading.length > 0) {
            body.storUpgrade = Object.fromEntries(
                upgrading.map(([bucket, s]) => [
                    bucket,
                    {
                        phase: s.phase,
                        reindexed: s.reindexed,
                        ...(s.backfill
                            ? {
                                  backfill: {
                                      scanned: s.backfill.scanned,
                                      rewritten: s.backfill.rewritten,
                                      lastId: s.backfill.lastId,
                                      rowsPerSecond: s.backfill.rate,
                                  },
                              }
                            : {}),
                        ...(s.phase === 'sweeping' && s.sweep ? { sweep: { checked: s.sweep.checked, rewritten: s.sweep.rewritten } } : {}),
                        // The data migrations still to finish, in the order they run.
                        ...(s.migrations.some((m) => m.state !== 'done')
                            ? {
                                  migrations: s.migrations
                                      .filter((m) => m.state !== 'done')
                                      .map((m) => ({
                                          number: m.number,
                                          name: m.name,
                                          state: m.state,
                                          scanned: m.scanned,
                                          rewritten: m.rewritten,
                                          cursor: m.cursor,
                                          rowsPerSecond: m.rate,
                                      })),
                              }
                            : {}),
                    },
                ]),
            );
        }
        return { ok, body };
    };
    mount(server, { method: 'get', path: '/ping', name: 'Ping' }, async (_req, res) => {
        const { ok, body } = await ping();
        res.send(ok ? 200 : 500, body);
    });
    // Load balancers' health checks: the same status, no body.
    mount(server, { method: 'head', path: '/ping', name: 'HeadPing' }, async (_req, res) => {
        const { ok } = await ping();
        res.status(ok ? 200 : 500);
        res.end();
    });
    mount(server, { method: 'get', path: '/mode', name: 'GetMode' }, async (_req, res) => {
        res.send(200, ctx.mode.current);
        return Promise.resolve();
    });
    mount(server, { method: 'post', path: '/mode', name: 'SetMode' }, async (req, res) => {
        await setMode(ctx, paramsOf(req).mode, hooks.migrateToFull);
        res.send(204);
    });
    mount(server, { method: 'get', path: '/loglevel', name: 'GetLogLevel' }, async (_req, res) => {
        res.send(200, { level: ctx.log.level() });
        return Promise.resolve();
    });
    mount(server, { method: 'post', path: '/loglevel', name: 'SetLogLevel' }, async (req, res) => {
        const level = paramsOf(req).level;
        if (level !== undefined && level !== '') {
            ctx.log.level(parseLevel(level));
        }
        res.send(200);
        return Promise.resolve();
    });
    mount(server, { method: 'post', path: '/cache', name: 'SyncCache' }, async (_req, res) => {
        if (ctx.mode.current === 'full' && hooks.syncCache) {
            await hooks.syncCache().catch((err: unknown) => {
                throw toApiError(err, 'store');
            });
        }
        res.send(204);
    });
}

function parseLevel(raw: unknown): bunyan.LogLevel {
    const names: Record<string, number> = {
        trace: bunyan.TRACE,
        debug: bunyan.DEBUG,
        info: bunyan.INFO,
        warn: bunyan.WARN,
        error: bunyan.ERROR,
        fatal: bunyan.FATAL,
    };
    const named = typeof raw === 'string' ? names[raw.toLowerCase()] : undefined;
    if (named !== undefined) {
        return named;
    }
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (Object.values(names).includes(n)) {
        return n;
    }
    throw invalidArgument(`invalid level: ${typeof raw === 'string' ? raw : JSON.stringify(raw)}`);
}
