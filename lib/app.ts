// The composition root, shared by bin/sapi.ts and the test harness. It
// builds the object graph once, in dependency order, and hands each part
// only what it uses:
//
//   config, log, store (from createStore)
//     → metrics → instrumented store, watched by GetConfig's cache
//     → downstream clients (VMAPI, CNAPI, IMGAPI, NAPI; observed by metrics)
//     → instance records → deployers (instrumented)
//     → model context (store, log, config, deployers, mode, config cache)
//     → rollout manager → restify server and routes.
//
// Nothing is assigned into any of these after construction; the mode is
// the one piece of state that changes (proto → full).

import type Logger from 'bunyan';
import type { Server } from 'restify';

import type { SapiConfig } from './config.js';
import { createClients, createDeployers, type Clients } from './deploy/index.js';
import type { Deployer } from './model/deployer.js';
import { instrumentDeployer, InstrumentedStore, Metrics } from './metrics.js';
import { ConfigCache } from './model/config-cache.js';
import type { Ctx } from './model/context.js';
import { instanceRecords } from './model/instances.js';
import { StoreLeases, type Leases } from './leases/leases.js';
import { MemoryLeaseBackend } from './stor/lease-backend.js';
import { loadMode, protoForced } from './model/mode.js';
import type { InstanceType } from './model/types.js';
import { RolloutManager } from './rollout/runner.js';
import { createServer } from './server.js';
import type { StoreSetup } from './stor/index.js';
import { ChangeFeed, changeSourceOf, rowObserverOf } from './stor/moray/feed.js';
import type { Store } from './stor/store.js';

export interface SapiApp {
    ctx: Ctx;
    rollouts: RolloutManager;
    /** Server locks and rollout ownership (in Moray when several SAPIs share it). */
    leases: Leases;
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
    setup?: Omit<StoreSetup, 'store'>;
    /** Downstream clients to use instead of those the config names (tests). */
    clients?: Clients;
}

export async function createApp(deps: AppDeps): Promise<SapiApp> {
    const { config, log, setup } = deps;
    const metrics = new Metrics(
        {
            ...(config.datacenter_name ? { datacenter: config.datacenter_name } : {}),
            ...(config.instanceUuid ? { instance: config.instanceUuid } : {}),
        },
        setup?.status,
    );
    // GetConfig's cache sees every write made through `store`; on Moray,
    // other processes write too, so its entries are re-checked after a bound.
    const configs = new ConfigCache({ shared: config.store.backend === 'moray' });
    const store = configs.watch(new InstrumentedStore(deps.store, metrics));
    // On Moray, the change feed tells the cache what every process changes (polled a few times a second).
    const feed =
        config.store.backend === 'moray'
            ? new ChangeFeed({
                  source: () => changeSourceOf(deps.store),
                  sink: configs,
                  // Rows SAPI 2.1.2 writes get their index copies from the rows the feed reads.
                  observer: () => rowObserverOf(deps.store),
                  // Moray's local cache follows the feed, and answers lists once current.
                  mirror: () => deps.store.capabilities().changeMirror ?? null,
                  log: log.child({ component: 'feed' }),
              })
            : null;
    feed?.start();
    // On Moray the backend decides the mode; TEST_SAPI_PROTO_MODE still forces proto.
    const initial = setup?.mode !== undefined && !protoForced() ? setup.mode : await loadMode(deps.store, config.mode);
    const mode = { current: initial, transitioning: false };

    const clients = deps.clients ?? createClients(config, log, (o) => metrics.downstreamCall(o));
    const records = instanceRecords({ store, log });
    const leases = new StoreLeases({
        backend: setup?.leaseBackend ?? new MemoryLeaseBackend(),
        ttlMs: config.lease_ttl_ms,
        onRenewError: (key, err) => log.warn({ err, lease: key }, 'lease renewal failed; retrying'),
    });
    const deployers: Partial<Record<InstanceType, Deployer>> = {};
    for (const [type, d] of Object.entries(createDeployers({ deploy: config.deploy, log, records, clients, leases }))) {
        deployers[type as InstanceType] = instrumentDeployer(d, metrics);
    }
    const ctx: Ctx = { store, log, config, deployers, mode, configs };
    const rollouts = new RolloutManager({ ctx, leases, cnapi: clients.cnapi, imgapi: clients.imgapi, onProgress: (r) => metrics.rollout(r) });

    // Moray may not have answered yet: the mode follows once it does.
    const storeReady: Promise<boolean> = setup?.resolved
        ? setup.resolved.then(
              (m) => {
                  if (!protoForced()) {
                      mode.current = m;
                  }
                  return true;
              },
              (err: unknown) => {
                  log.error({ err }, 'start-up on moray failed');
                  return false;
              },
          )
        : Promise.resolve(true);
    // Background work waits for the port: interrupted rollouts resume once
    // the server is listening (and the store has decided the mode).
    let started = false;
    let closing = false;
    let resuming: Promise<unknown> = Promise.resolve();
    const startBackground = (): void => {
        if (started) {
            return;
        }
        started = true;
        void storeReady.then((ok) => {
            if (ok && !closing) {
                resuming = rollouts.resumeAll().catch((err: unknown) => log.error({ err }, 'resuming rollouts failed'));
            }
        });
    };
    const status = setup?.status;
    const server = createServer({
        ctx,
        rollouts,
        onRequestDone: (route, method, status, ms) => metrics.request(route, method, status, ms),
        ...(setup?.migrateToFull ? { migrateToFull: setup.migrateToFull } : {}),
        ...(setup?.syncCache ? { syncCache: setup.syncCache } : {}),
        ...(status ? { storeStatus: status } : {}),
    });
    server.server.requestTimeout = deps.config.requestTimeoutMs;
    let metricsServer: { close: () => Promise<void> } | null = null;
    return {
        ctx,
        rollouts,
        leases,
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
                    startBackground();
                });
            }),
        close: async () => {
            closing = true;
            // No new rollout items, takeovers or promotions; a rollout left
            // running stays so in the store for whichever SAPI holds it next.
            rollouts.stop();
            await new Promise<void>((resolve) => {
                server.server.close(() => resolve());
                server.server.closeIdleConnections();
            });
            setup?.stop();
            feed?.stop();
            await resuming; // a resume still reading the store finishes first
            await metricsServer?.close();
            // The setup closes every store it opened; else ctx.store wraps deps.store.
            if (setup) {
                await setup.close();
            } else {
                await ctx.store.close();
            }
        },
    };
}
