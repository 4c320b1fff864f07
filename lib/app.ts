// Composition shared by bin/sapi.ts and the test harness: config + store +
// deployers → Ctx → restify server.

import type Logger from 'bunyan';
import type { Server } from 'restify';

import type { SapiConfig } from './config.js';
import type { Deployer } from './deploy/deployer.js';
import type { Ctx } from './model/context.js';
import { instrumentDeployer, InstrumentedStore, Metrics } from './metrics.js';
import { loadMode } from './model/mode.js';
import { RolloutManager } from './rollout/runner.js';
import type { InstanceType } from './model/types.js';
import { createServer } from './server.js';
import type { StoreSetup } from './stor/index.js';
import type { Store } from './stor/store.js';

export interface SapiApp {
    ctx: Ctx;
    server: Server;
    metrics: Metrics;
    /** Serve /metrics (config metricsPort); resolves with the bound port. */
    listenMetrics(port?: number, host?: string): Promise<number>;
    /** Listen; resolves with the bound port. */
    listen(port?: number, host?: string): Promise<number>;
    /** Stop accepting, finish in-flight requests, close the store. */
    close(): Promise<void>;
}

export interface AppDeps {
    config: SapiConfig;
    log: Logger;
    store: Store;
    /** What createStore() set up besides the store (mode, migration, cache, progress). */
    hooks?: Omit<StoreSetup, 'store'>;
    deployers?: (ctx: Ctx) => Partial<Record<InstanceType, Deployer>>;
}

export async function createApp(deps: AppDeps): Promise<SapiApp> {
    const hooks = deps.hooks;
    // On Moray the backend decides the mode; TEST_SAPI_PROTO_MODE still forces proto.
    const mode =
        hooks?.mode !== undefined && process.env.TEST_SAPI_PROTO_MODE !== 'true'
            ? hooks.mode
            : await loadMode(deps.store, deps.config.mode);
    const metrics = new Metrics({
        ...(deps.config.datacenter_name ? { datacenter: deps.config.datacenter_name } : {}),
        ...(deps.config.instanceUuid ? { instance: deps.config.instanceUuid } : {}),
    });
    const ctx: Ctx = {
        store: new InstrumentedStore(deps.store, metrics),
        log: deps.log,
        config: deps.config,
        deployers: {},
        mode: { current: mode, transitioning: false },
        metrics,
    };
    if (deps.deployers) {
        for (const [type, d] of Object.entries(deps.deployers(ctx))) {
            ctx.deployers[type as keyof Ctx['deployers']] = instrumentDeployer(d, metrics);
        }
    }
    ctx.rollouts = new RolloutManager(ctx);
    ctx.rollouts.onProgress((r) => metrics.rollout(r));
    const rollouts = ctx.rollouts;
    if (hooks?.resolved) {
        // Moray has not answered yet: the mode and the rollouts to resume follow once it does.
        hooks.resolved.then(
            async (m) => {
                if (process.env.TEST_SAPI_PROTO_MODE !== 'true') {
                    ctx.mode.current = m;
                }
                await rollouts.resumeAll();
            },
            (err: unknown) => deps.log.error({ err }, 'start-up on moray failed'),
        ).catch((err: unknown) => deps.log.error({ err }, 'resuming rollouts failed'));
    } else {
        await rollouts.resumeAll();
    }
    const status = hooks?.status;
    if (status) {
        metrics.watchBuckets(status);
    }
    const server = createServer({
        ctx,
        onRequestDone: (route, method, status, ms) => metrics.request(route, method, status, ms),
        ...(hooks?.migrateToFull ? { migrateToFull: hooks.migrateToFull } : {}),
        ...(hooks?.syncCache ? { syncCache: hooks.syncCache } : {}),
        ...(status ? { storeStatus: status } : {}),
    });
    server.server.requestTimeout = deps.config.requestTimeoutMs;
    let metricsServer: { close: () => Promise<void> } | null = null;
    return {
        ctx,
        server,
        metrics,
        listenMetrics: async (port = deps.config.metricsPort ?? 8881, host = deps.config.adminIp ?? deps.config.host) => {
            const m = await metrics.listen(port, host);
            metricsServer = m;
            return m.port;
        },
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
            hooks?.stop();
            await metricsServer?.close();
            // The setup closes every store it opened; else ctx.store wraps deps.store.
            if (hooks) {
                await hooks.close();
            } else {
                await ctx.store.close();
            }
        },
    };
}
