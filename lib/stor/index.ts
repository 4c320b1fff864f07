// createStore(config): the one place a backend is chosen, and, on Moray,
// the one place the mode is decided.
//
// sqlite: the embedded store, for everything; the mode is kept in it.
// moray:  Moray is the authority. What it holds decides the mode: the
//         `mode` setting SAPI-TS keeps there, or full mode for the buckets
//         SAPI 2.1.2 left (it used Moray only in full mode). The `mode`
//         config key only seeds a Moray that has never held SAPI's data.
//         In proto mode the embedded store holds everything, until SetMode
//         full migrates it into Moray. In full mode reads go to Moray and the
//         embedded store is its local cache, which answers only while Moray
//         is unreachable and only once it has been filled; it records the
//         mode but never decides it. A service that starts while Moray is
//         unreachable and has no filled cache answers 503 until Moray
//         answers, then goes on as if it had just started.

import type Logger from 'bunyan';

import type { SapiConfig } from '../config.js';
import { MemoryLeaseBackend, type LeaseBackend } from './lease-backend.js';
import { ALL_BUCKETS } from './buckets.js';
import { CACHE_FILLED_KEY, CachedStore } from './cached.js';
import { copyBucket } from './copy.js';
import type { BucketStatus, MigrationProgress } from './moray/buckets-init.js';

export type { BucketStatus, MigrationProgress };
import { MultiDcStore } from './multi-dc.js';
import { SqliteStore } from './sqlite/index.js';
import { MODE_META_KEY, type Mode, type Store } from './store.js';
import { SwitchingStore } from './switching.js';

export interface StoreSetup {
    /** The store to serve with (its backend may change; the object does not). */
    store: Store;
    /**
     * The mode to start in, when the backend decides it (Moray); absent:
     * the mode kept in the store (embedded backend).
     */
    mode?: Mode;
    /** Settles with the mode once Moray has answered, when `mode` is provisional. */
    resolved?: Promise<Mode>;
    /** SetMode proto → full (moray backend): migrate, then serve from Moray. */
    migrateToFull?: () => Promise<void>;
    /** POST /cache. */
    syncCache?: () => Promise<void>;
    /** Moray bucket setup, reindex, data migration and sweep progress; null without Moray. */
    status?: () => Record<string, BucketStatus> | null;
    /**
     * Where leases (server locks, rollout ownership) are kept: Moray in
     * full mode, shared by every SAPI on it; this process's memory in proto
     * mode. Absent: memory (embedded backend).
     */
    leaseBackend?: LeaseBackend;
    /** Stop timers and background work. */
    stop(): void;
    /** Close every store this setup opened. */
    close(): Promise<void>;
}

const CACHE_REFRESH_MS = 60 * 60 * 1000;
/** How long an upgrade's data migrations wait for the local cache's first copy, at most. */
const FIRST_COPY_WAIT_MS = 60_000;
/** How long the first copy into the local cache waits for the change feed's first poll. */
const FEED_START_WAIT_MS = 2000;
/** How long a start in proto mode waits for Moray before going on without it. */
const PROTO_MORAY_WAIT_MS = 2000;
const MIGRATION_KEY = 'migration.done';

export interface CreateStoreOptions {
    /** How long start-up waits for Moray to answer (default 10 s, as 2.1.2). */
    morayWaitMs?: number;
    /** Between attempts to reach Moray after that (default 1 s, doubling to 10 s). */
    retryMs?: number;
}

export async function createStore(config: SapiConfig, log: Logger, opts: CreateStoreOptions = {}): Promise<StoreSetup> {
    const local = new SqliteStore({ path: config.store.path });
    await local.init();
    if (config.store.backend === 'sqlite') {
        log.info({ path: config.store.path }, 'embedded store open');
        return { store: local, stop: () => undefined, close: () => local.close() };
    }
    const waitMs = opts.morayWaitMs ?? 10_000;
    // The moray client is loaded only for this backend (it adds to every start).
    const { MorayStore } = await import('./moray/index.js');

    const m: Partial<NonNullable<SapiConfig['moray']>> = config.moray ?? {};
    // An upgrade's data migrations wait (a while at most) for the local cache's first copy:
    // it answers searches exactly while they run, and copies faster before they load Moray.
    let firstCopied: () => void = () => undefined;
    const firstCopy = new Promise<void>((resolve) => {
        firstCopied = resolve;
        setTimeout(resolve, FIRST_COPY_WAIT_MS).unref();
    });
    const moray = new MorayStore({
        migrationsAfter: () => firstCopy,
        connect: {
            ...(m.host ? { host: m.host, port: m.port ?? 2020 } : {}),
            ...(m.srvDomain ? { srvDomain: m.srvDomain } : {}),
            ...(m.cueballOptions ? { cueballOptions: m.cueballOptions } : {}),
            connectTimeoutMs: 1000,
        },
        log: log.child({ component: 'moray' }),
        initTimeoutMs: waitMs,
    });
    const cached = new CachedStore(moray, local, log.child({ component: 'cache' }), {
        pendingFields: (bucket) => moray.initializer?.pendingFields(bucket) ?? new Set<string>(),
    });
    let timer: NodeJS.Timeout | null = null;
    let stopped = false;
    const startRefresh = (): void => {
        if (timer || stopped) {
            return;
        }
        const refresh = (awaitFeedMs = 0): void => {
            cached
                .sync({ awaitFeedMs })
                .catch((err: unknown) => log.warn({ err }, 'local cache refresh failed'))
                .finally(firstCopied);
        };
        // The first copy waits briefly for the change feed (the app starts it next), so that it counts for lists.
        refresh(FEED_START_WAIT_MS);
        timer = setInterval(refresh, CACHE_REFRESH_MS);
        timer.unref();
    };

    // Multi-DC: a non-empty master_host is the master DC's Moray.
    const masterHost = m.master_host;
    const master = masterHost
        ? new MorayStore({
              connect: { host: masterHost, port: Number(m.master_port || 2020), connectTimeoutMs: 1000 },
              log: log.child({ component: 'moray-master' }),
              initTimeoutMs: waitMs,
          })
        : null;
    const full = async (): Promise<Store> => {
        if (!master) {
            return cached;
        }
        await master.init().catch((err: unknown) => log.warn({ err }, 'master moray not ready yet'));
        return new MultiDcStore(cached, master);
    };

    const store = new SwitchingStore(null);
    // Leases follow the store: in memory while the embedded store serves
    // (proto mode), in Moray otherwise (failing as unavailable until it answers).
    const memoryLeases = new MemoryLeaseBackend();
    const morayLeases = moray.leaseBackend();
    const leaseBackend: LeaseBackend = {
        get: (key) => (store.inner === local ? memoryLeases : morayLeases).get(key),
        put: (record, etag) => (store.inner === local ? memoryLeases : morayLeases).put(record, etag),
        del: (key, etag) => (store.inner === local ? memoryLeases : morayLeases).del(key, etag),
    };
    const localMode = await local.getMeta(MODE_META_KEY);
    const cacheFilled = (await local.getMeta(CACHE_FILLED_KEY)) !== null;

    /** Serve in full mode from Moray (and record the mode in both stores). */
    const goFull = async (morayAnswered = true): Promise<Mode> => {
        const setUp = moray.init();
        if (morayAnswered) {
            await setUp.catch((err: unknown) => log.warn({ err }, 'moray buckets not set up yet: setup goes on in the background'));
            await moray.setMeta(MODE_META_KEY, 'full').catch((err: unknown) => log.warn({ err }, 'could not record full mode in moray yet'));
        } else {
            setUp.catch(() => undefined);
        }
        await local.setMeta(MODE_META_KEY, 'full');
        store.switchTo(await full());
        startRefresh();
        log.info({ master: masterHost ?? null, cacheFilled }, 'full mode on moray, with the embedded store as local cache');
        return 'full';
    };
    const goProto = async (): Promise<Mode> => {
        await local.setMeta(MODE_META_KEY, 'proto');
        store.switchTo(local);
        log.info({ path: config.store.path }, 'proto mode on the embedded store; moray is used after SetMode full');
        return 'proto';
    };
    /** Moray answered `stored`: decide, and serve accordingly. */
    const decide = async (stored: Mode | null): Promise<Mode> => {
        if (stored !== null) {
            log.info({ mode: stored }, 'mode read from moray');
            // Recorded every time: SAPI 2.1.2's data carries no record.
            return stored === 'full' ? goFull() : goProto();
        }
        // A Moray that has never held SAPI's data: the config seeds the mode.
        const seed = config.mode ?? 'proto';
        log.info({ mode: seed }, 'moray holds no SAPI data: mode seeded from the config');
        return seed === 'full' ? goFull() : goProto();
    };

    const setup: StoreSetup = {
        store,
        leaseBackend,
        stop: () => {
            stopped = true;
            if (timer) clearInterval(timer);
        },
        close: async () => {
            setup.stop();
            await moray.close();
            await master?.close();
            await local.close();
        },
        status: () => moray.initializer?.status() ?? null,
        syncCache: async () => {
            await cached.sync();
        },
        migrateToFull: async () => {
            await moray.init();
            // Until the copy is complete, Moray says proto (its objects are not yet the truth).
            await moray.setMeta(MODE_META_KEY, 'proto');
            await migrate(local, moray, log);
            await moray.setMeta(MODE_META_KEY, 'full');
            await local.setMeta(MODE_META_KEY, 'full');
            store.switchTo(await full());
            startRefresh();
        },
    };

    // A SAPI that is, and has only ever been, in proto mode expects no Moray
    // (a new headnode brings SAPI up first): it asks only briefly before
    // going on in proto mode. Moray's answer, when it comes in time, decides.
    const firstWaitMs = localMode !== 'full' && config.mode === 'proto' ? Math.min(waitMs, PROTO_MORAY_WAIT_MS) : waitMs;
    let first: Mode | null | undefined;
    try {
        first = await moray.storedMode(firstWaitMs);
    } catch (err) {
        log.warn({ err }, 'moray does not answer at start-up');
    }
    if (first !== undefined) {
        setup.mode = await decide(first);
        return setup;
    }

    // Moray is unreachable. What the cache recorded stands in until it answers.
    if (localMode === 'full' && cacheFilled) {
        setup.mode = await goFull(false);
        log.warn('moray unreachable: serving from the local cache until it answers');
        return setup;
    }
    if (localMode === 'proto' || (localMode === null && config.mode === 'proto')) {
        // Proto mode never needs Moray (a headnode brings SAPI up before Moray exists).
        setup.mode = await goProto();
        return setup;
    }
    log.warn({ cacheFilled, localMode }, 'moray unreachable and nothing cached: answering 503 until moray answers');
    setup.mode = 'full';
    setup.resolved = (async (): Promise<Mode> => {
        let delay = opts.retryMs ?? 1000;
        for (;;) {
            if (stopped) {
                return setup.mode as Mode;
            }
            try {
                const stored = await moray.storedMode(waitMs);
                return await decide(stored);
            } catch (err) {
                log.warn({ err, retryInMs: delay }, 'moray still unreachable');
            }
            await new Promise((r) => setTimeout(r, delay).unref());
            delay = Math.min(delay * 2, 10_000);
        }
    })();
    return setup;
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
