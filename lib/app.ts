// Composition shared by bin/sapi.ts and the test harness: config + store +
// deployers → Ctx → restify server.

import type Logger from 'bunyan';
import type { Server } from 'restify';

import type { SapiConfig } from './config.js';
import type { Deployer } from './deploy/deployer.js';
import type { Ctx } from './model/context.js';
import { loadMode } from './model/mode.js';
import { RolloutManager } from './rollout/runner.js';
import type { InstanceType } from './model/types.js';
import { createServer } from './server.js';
import type { Store } from './stor/store.js';

export interface SapiApp {
    ctx: Ctx;
    server: Server;
    /** Listen; resolves with the bound port. */
    listen(port?: number, host?: string): Promise<number>;
    /** Stop accepting, finish in-flight requests, close the store. */
    close(): Promise<void>;
}

export interface AppDeps {
    config: SapiConfig;
    log: Logger;
    store: Store;
    /** Backend hooks (moray): proto → full migration, cache refresh. */
    hooks?: { migrateToFull?: (ctx: Ctx) => Promise<void>; syncCache?: () => Promise<void>; stop?: () => void };
    deployers?: (ctx: Ctx) => Partial<Record<InstanceType, Deployer>>;
}

export async function createApp(deps: AppDeps): Promise<SapiApp> {
    const mode = await loadMode(deps.store, deps.config.mode);
    const ctx: Ctx = {
        store: deps.store,
        log: deps.log,
        config: deps.config,
        deployers: {},
        mode: { current: mode, transitioning: false },
    };
    if (deps.deployers) {
        ctx.deployers = deps.deployers(ctx);
    }
    ctx.rollouts = new RolloutManager(ctx);
    await ctx.rollouts.resumeAll();
    const hooks = deps.hooks ?? {};
    const migrate = hooks.migrateToFull;
    const server = createServer({
        ctx,
        ...(migrate ? { migrateToFull: () => migrate(ctx) } : {}),
        ...(hooks.syncCache ? { syncCache: hooks.syncCache } : {}),
    });
    server.server.requestTimeout = deps.config.requestTimeoutMs;
    return {
        ctx,
        server,
        listen: (port = deps.config.port, host = deps.config.host) =>
            new Promise((resolve, reject) => {
                server.once('error', reject);
                server.listen(port, host, () => {
                    server.removeListener('error', reject);
                    const addr = server.address() as unknown as { port: number } | null;
                    resolve(addr ? addr.port : port);
                });
            }),
        close: async () => {
            await new Promise<void>((resolve) => {
                server.server.close(() => resolve());
                server.server.closeIdleConnections();
            });
            hooks.stop?.();
            await ctx.store.close();
            if (ctx.store !== deps.store) {
                await deps.store.close().catch(() => undefined);
            }
        },
    };
}
