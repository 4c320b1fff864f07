// createStore(config): the one place a backend is chosen.
//
// sqlite: the embedded store, for everything.
// moray:  proto mode runs on the embedded store; SetMode full migrates every
//         object into Moray, then serves from Moray with the embedded file
//         as its local cache (GetConfig keeps working while Moray is down).

import type Logger from 'bunyan';

import type { SapiConfig } from '../config.js';
import type { Ctx } from '../model/context.js';
import { ALL_BUCKETS } from './buckets.js';
import { CachedStore } from './cached.js';
import { copyBucket } from './copy.js';
import { MorayStore } from './moray/index.js';
import { MultiDcStore } from './multi-dc.js';
import { SqliteStore } from './sqlite/index.js';
import type { Store } from './store.js';

export interface StoreSetup {
    /** The store to serve with now. */
    store: Store;
    /** SetMode proto → full (moray backend): migrate, then switch ctx.store. */
    migrateToFull?: (ctx: Ctx) => Promise<void>;
    /** POST /cache. */
    syncCache?: () => Promise<void>;
    /** Stop timers (the stores are closed by the app). */
    stop(): void;
}

const CACHE_REFRESH_MS = 60 * 60 * 1000;
const MIGRATION_KEY = 'migration.done';

export async function createStore(config: SapiConfig, log: Logger): Promise<StoreSetup> {
    const local = new SqliteStore({ path: config.store.path });
    await local.init();
    if (config.store.backend === 'sqlite') {
        log.info({ path: config.store.path }, 'embedded store open');
        return { store: local, stop: () => undefined };
    }

    const m = config.moray ?? {};
    const moray = new MorayStore({
        connect: {
            ...(m.host ? { host: m.host, port: m.port ?? 2020 } : {}),
            ...(m.srvDomain ? { srvDomain: m.srvDomain } : {}),
            ...(m.cueballOptions ? { cueballOptions: m.cueballOptions } : {}),
            connectTimeoutMs: 1000,
        },
        log: log.child({ component: 'moray' }),
        // 2.1.2 waits 10 s for Moray, then serves from the local cache.
        initTimeoutMs: 10_000,
    });
    const cached = new CachedStore(moray, local, log.child({ component: 'cache' }));
    let timer: NodeJS.Timeout | null = null;
    const startRefresh = (): void => {
        const refresh = (): void => {
            cached.sync().catch((err: unknown) => log.warn({ err }, 'local cache refresh failed'));
        };
        refresh();
        timer = setInterval(refresh, CACHE_REFRESH_MS);
        timer.unref();
    };
    const stop = (): void => {
        if (timer) clearInterval(timer);
    };
    const syncCache = async (): Promise<void> => {
        await cached.sync();
    };

    // Multi-DC: a non-empty master_host is the master DC's Moray.
    const masterHost = m.master_host;
    const master = masterHost
        ? new MorayStore({
              connect: { host: masterHost, port: Number(m.master_port || 2020), connectTimeoutMs: 1000 },
              log: log.child({ component: 'moray-master' }),
              initTimeoutMs: 10_000,
          })
        : null;
    const full = async (): Promise<Store> => {
        if (!master) {
            return cached;
        }
        await master.init().catch((err: unknown) => log.warn({ err }, 'master moray not ready yet'));
        return new MultiDcStore(cached, master);
    };

    const localMode = await local.getMeta('mode');
    if (localMode === 'full' || config.mode === 'full') {
        await moray.init().catch((err: unknown) => log.warn({ err }, 'moray not ready yet: serving from the local cache'));
        startRefresh();
        log.info({ master: masterHost ?? null }, 'full mode on moray, with the embedded store as local cache');
        return { store: await full(), syncCache, stop };
    }

    log.info({ path: config.store.path }, 'proto mode on the embedded store; moray is used after SetMode full');
    return {
        store: local,
        syncCache,
        stop,
        migrateToFull: async (ctx: Ctx) => {
            await moray.init();
            await migrate(local, moray, log);
            await moray.setMeta('mode', 'full');
            await local.setMeta('mode', 'full');
            ctx.store = await full();
            startRefresh();
        },
    };
}

/**
 * Copy every object of the embedded store into Moray, bucket by bucket
 * (parents first). Unconditional puts make it idempotent; a restart after a
 * failure simply runs it again.
 */
export async function migrate(from: Store, to: Store, log: Logger): Promise<number> {
    let n = 0;
    for (const def of ALL_BUCKETS) {
        n += (await copyBucket(from, to, def.name, 200)).size;
        log.info({ bucket: def.name, total: n }, 'migrated bucket to moray');
    }
    await from.setMeta(MIGRATION_KEY, new Date().toISOString());
    return n;
}
