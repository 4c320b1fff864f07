// Moray bucket setup, in the background (VMAPI's lib/moray model):
//
//   1. delete the legacy bucket `sapi_history` if present;
//   2. for each bucket definition: create it if missing (with
//      `options.version`), else update it when the stored version is older
//      (bucket-setup.ts);
//   3. run the data migrations (migrations.ts) that `sapi_meta` does not
//      record as done, in number order, each resuming at its saved cursor:
//      a bucket this process creates starts with all of its migrations
//      done; any other (SAPI 2.1.2's, or one an earlier SAPI-TS upgraded
//      without them) is migrated. Migration 1 is the backfill of the
//      derived index fields (backfill.ts). They run before the reindex: a
//      row they rewrite after the bucket update is indexed by that write
//      (Moray writes every index column and sets its `_rver`), so each row
//      is written once, by them or by the reindex;
//   4. reindex updated buckets, `reindexObjects` in a loop until a call
//      processes nothing (the rows the migrations left);
//   5. sweep the buckets with derived fields (sweep.ts): after a backfill
//      run here, only what was written behind it (runCatchUp, without
//      reading again the rows it wrote); else the rows changed since the
//      mark kept in `sapi_meta` (rows SAPI 2.1.2 wrote while no SAPI-TS
//      ran). With no mark yet, the sweep starts an hour before the
//      backfill began; a bucket this process creates needs none (its mark
//      is now). After start-up, the sweep runs again every sweepEveryMs, as
//      a backstop for what the change feed's repairer misses.
//
// Every Moray call is retried with exponential backoff until it succeeds
// (or stop() is called; retrier.ts). Until a bucket's reindex is complete,
// the index fields it adds are reported by pendingFields(): the store must not trust
// them in a server-side filter (rows written before the update are not in
// the new index yet), and filters on them client-side instead. A
// migration's fields stay pending until it is done, and derived fields
// until the start-up sweep is done too (the later sweeps leave them
// trusted: the feed repairs what it reads).

import type { BucketDef } from '../buckets.js';
import { StoreUnavailableError } from '../errors.js';
import { reindexAll, reindexFields, setupBucket, type MorayBucketDef } from './bucket-setup.js';
import type { MorayClient } from './client.js';
import {
    asBackfillState,
    finishedMigrationState,
    isDone,
    loadMigrationState,
    MIGRATIONS,
    progressOf,
    runMigration,
    saveMigrationState,
    type Migration,
    type MigrationProgress,
    type MigrationRun,
    type MigrationState,
} from './migrations.js';
import { deferred, Retrier, Stopped, type InitLogger } from './retrier.js';
import { loadSweepMark, morayNow, runCatchUp, runSweep, saveSweepMark, SWEEP_EVERY_MS, sweepStartFor, type SweepDeps } from './sweep.js';

export { bucketConfig, type MorayBucketDef } from './bucket-setup.js';
export type { InitLogger } from './retrier.js';
export type { MigrationProgress } from './migrations.js';

import type { BucketPhase, BucketStatus, BucketsInitOptions } from './bucket-status.js';

export type { BucketPhase, BucketStatus, BucketsInitOptions };

const nullLog: InitLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export class BucketsInitializer {
    private readonly client: MorayClient;
    private readonly defs: MorayBucketDef[];
    private readonly log: InitLogger;
    private readonly batchSize: number;
    private readonly backfillBatchSize: number;
    private readonly backfillDepth: number;
    private readonly sweepPageSize: number;
    private readonly sweepEveryMs: number;
    private readonly metaBucket: string;
    /** The migrations of our buckets, in number order. */
    private readonly migrations: Migration[];
    /** Retries every Moray call, until stop(). */
    private readonly retry: Retrier;
    private readonly legacy: readonly string[];
    private readonly states = new Map<string, BucketStatus>();
    private readonly setup = deferred();
    private readonly reindex = deferred();
    private started = false;
    /** Buckets whose derived fields are backfilled (their copies are kept up to date from then on). */
    private readonly backfilled = new Set<string>();
    /** Per bucket: the fields pending while it is reindexed (or that Moray does not index). */
    private readonly indexing = new Map<string, string[]>();
    /** Migrations (by number) not done yet. */
    private readonly pendingMigrations = new Set<number>();
    /** Buckets whose start-up sweep is still to be done. */
    private readonly sweepPending = new Set<string>();
    /** Buckets whose reindex is still to be done. */
    private readonly reindexPending = new Set<string>();
    private sweepTimer: NodeJS.Timeout | null = null;
    private readonly migrationsAfter: (() => Promise<void>) | undefined;

    constructor(opts: BucketsInitOptions) {
        this.client = opts.client;
        this.defs = opts.buckets.map((b) => ({ name: b.name, index: b.index, version: b.version, derived: b.derived }));
        this.log = opts.log ?? nullLog;
        this.batchSize = opts.reindexBatchSize ?? 100;
        this.backfillBatchSize = opts.backfillBatchSize ?? 1000;
        this.backfillDepth = opts.backfillDepth ?? 4;
        this.sweepPageSize = opts.sweepPageSize ?? this.backfillBatchSize;
        this.sweepEveryMs = opts.sweepEveryMs ?? SWEEP_EVERY_MS;
        this.metaBucket = opts.metaBucket ?? 'sapi_meta';
        this.retry = new Retrier(this.client, this.log, opts.retryMinDelayMs ?? 100, opts.retryMaxDelayMs ?? 5000);
        this.legacy = opts.legacyBuckets ?? ['sapi_history'];
        this.migrationsAfter = opts.migrationsAfter;
        const numbers = new Set<number>();
        this.migrations = [...(opts.migrations ?? MIGRATIONS)]
            .filter((m) => this.defs.some((d) => d.name === m.bucket && d.version >= m.version))
            .sort((a, b) => a.number - b.number);
        for (const m of this.migrations) {
            if (numbers.has(m.number)) {
                throw new TypeError(`two data migrations numbered ${m.number}`);
            }
            numbers.add(m.number);
        }
        for (const def of this.defs) {
            this.states.set(def.name, {
                phase: 'unknown',
                version: null,
                // Until Moray tells us, no index is trusted but the key's.
                pendingFields: Object.keys(def.index).filter((f) => f !== 'uuid'),
                reindexed: 0,
                backfill: null,
                sweep: null,
                migrations: this.migrations.filter((m) => m.bucket === def.name).map((m) => progressOf(m, null, 'pending')),
            });
        }
    }

    /** Starts the background work (once). */
    start(): void {
        if (this.started) {
            return;
        }
        this.started = true;
        this.run().catch((err: unknown) => {
            const e = err instanceof Error ? err : new Error(String(err));
            if (!(e instanceof Stopped)) {
                this.log.error({ err: e }, 'moray bucket setup failed');
            }
            this.setup.reject(e);
            this.reindex.reject(e);
        });
    }

    /** Stops retrying; pending waits reject. */
    stop(): void {
        if (this.sweepTimer) {
            clearTimeout(this.sweepTimer);
            this.sweepTimer = null;
        }
        this.retry.stop();
        this.setup.reject(new Stopped('bucket setup stopped'));
        this.reindex.reject(new Stopped('bucket setup stopped'));
    }

    /** Resolves when every bucket exists at our version (reindexing may go on). */
    setupDone(): Promise<void> {
        return this.setup.promise;
    }

    /** Resolves when every bucket is set up, fully reindexed, migrated and swept once. */
    reindexDone(): Promise<void> {
        return this.reindex.promise;
    }

    isSetUp(): boolean {
        return [...this.states.values()].every((s) => s.phase !== 'unknown');
    }

    /** True when `bucket` (or every bucket) is set up and fully indexed. */
    isReady(bucket?: string): boolean {
        if (bucket !== undefined) {
            return this.states.get(bucket)?.phase === 'ready';
        }
        return [...this.states.values()].every((s) => s.phase === 'ready');
    }

    /** Whether `bucket`'s derived fields are backfilled (rows written since may still need their copies). */
    isBackfilled(bucket: string): boolean {
        return this.backfilled.has(bucket);
    }

    /** Index fields of `bucket` that a server-side filter must not rely on yet. */
    pendingFields(bucket: string): ReadonlySet<string> {
        return new Set(this.states.get(bucket)?.pendingFields ?? []);
    }

    status(): Record<string, BucketStatus> {
        const out: Record<string, BucketStatus> = {};
        for (const [name, s] of this.states) {
            out[name] = {
                ...s,
                pendingFields: [...s.pendingFields],
                migrations: s.migrations.map((m) => ({ ...m })),
                ...(s.sweep ? { sweep: { ...s.sweep } } : {}),
            };
        }
        return out;
    }

    // ---- the work

    private async run(): Promise<void> {
        // Requests fail until the client has a connection: wait for one
        // (quietly, unless it takes longer than the longest backoff).
        await this.retry.retrying('connect to moray', () => this.client.waitConnected(this.retry.maxDelay));
        for (const name of this.legacy) {
            const deleted = await this.retry.retrying(`delete legacy bucket ${name}`, () => this.client.deleteBucket(name));
            if (deleted) {
                this.log.info({ bucket: name }, 'deleted legacy moray bucket');
            }
        }
        const toReindex: MorayBucketDef[] = [];
        const created = new Set<string>();
        for (const def of this.defs) {
            const { bucket: b, created: isNew } = await this.retry.retrying(`set up bucket ${def.name}`, () => setupBucket(this.client, this.log, def));
            if (isNew) {
                created.add(def.name);
            }
            const state = this.states.get(def.name) as BucketStatus;
            state.version = b.version;
            const active = reindexFields(b);
            // Fields we index that Moray does not (a newer SAPI's bucket) stay pending.
            const missing = Object.keys(def.index).filter((f) => f !== 'uuid' && !(f in b.index));
            // Derived fields stay pending until the migration state is known.
            const derived = Object.keys(def.derived ?? {});
            this.indexing.set(def.name, [...new Set([...active, ...missing])]);
            state.pendingFields = [...new Set([...active, ...missing, ...derived])];
            if (Object.keys(b.reindexActive).length > 0) {
                state.phase = 'reindexing';
                toReindex.push(def);
                this.reindexPending.add(def.name);
            } else {
                state.phase = 'ready';
            }
        }
        // Which migrations are still to run, in number order.
        const toMigrate: { m: Migration; def: MorayBucketDef; from: MigrationState | null }[] = [];
        for (const m of this.migrations) {
            const def = this.defOf(m.bucket);
            let saved: MigrationState | null;
            if (created.has(def.name)) {
                const s = finishedMigrationState(m);
                saved = s;
                await this.retry.retrying(`record migration ${m.number} of ${def.name}`, () => saveMigrationState(this.client, this.metaBucket, m, s));
            } else {
                saved = await this.retry.retrying(`read migration ${m.number} state of ${def.name}`, () => loadMigrationState(this.client, this.metaBucket, m));
            }
            if (isDone(m, saved)) {
                this.migrationProgress(def, m, progressOf(m, saved, 'done'), saved);
                if (m.fillsDerived) {
                    this.backfilled.add(def.name);
                }
            } else {
                this.migrationProgress(def, m, progressOf(m, saved, 'pending'), null);
                this.pendingMigrations.add(m.number);
                toMigrate.push({ m, def, from: saved });
            }
        }
        /** Where each sweep starts: the saved mark, else decided once the backfill is done. */
        const toSweep = new Map<string, { def: MorayBucketDef; mark: number | null }>();
        const fresh: MorayBucketDef[] = [];
        for (const def of this.defs) {
            if (hasDerived(def)) {
                if (created.has(def.name)) {
                    fresh.push(def);
                } else {
                    const mark = await this.retry.retrying(`read sweep mark of ${def.name}`, () => loadSweepMark(this.client, this.metaBucket, def.name));
                    toSweep.set(def.name, { def, mark });
                    this.sweepPending.add(def.name);
                }
            }
            const state = this.states.get(def.name) as BucketStatus;
            state.pendingFields = this.pendingOf(def);
            state.phase = this.nextPhase(def);
        }
        this.setup.resolve();
        this.log.info({ buckets: this.defs.map((d) => d.name) }, 'moray buckets set up');
        // The migrations first: a row they rewrite is indexed by that write
        // (Moray sets every index column and the row's _rver), so the
        // reindex that follows only does the rows they left.
        /** Per bucket: the derived fields' backfill run here. */
        const backfilledNow = new Map<string, MigrationRun>();
        if (toMigrate.length > 0 && this.migrationsAfter) {
            await this.migrationsAfter();
        }
        for (const { m, def, from } of toMigrate) {
            const run = await this.migrate(def, m, from);
            if (m.fillsDerived) {
                backfilledNow.set(def.name, run);
            }
        }
        for (const def of toReindex) {
            await this.reindexBucket(def);
        }
        for (const { def, mark } of toSweep.values()) {
            const run = backfilledNow.get(def.name);
            if (run) {
                // A backfill run here read every row: only what was written behind it is looked for.
                await this.sweepBucket(def, run.clock, true, run);
            } else {
                // No mark yet: from well before the backfill began.
                await this.sweepBucket(def, mark ?? sweepStartFor(this.states.get(def.name)?.backfill?.startedAt), true);
            }
        }
        for (const def of fresh) {
            // Every row of a new bucket has its copies: sweeps start from now.
            const now = await this.retry.retrying(`read moray's clock for ${def.name}`, () => morayNow(this.client, this.metaBucket, def.name));
            await this.retry.retrying(`save sweep mark of ${def.name}`, () => saveSweepMark(this.client, this.metaBucket, def.name, now));
        }
        this.reindex.resolve();
        this.scheduleSweeps();
    }

    private defOf(bucket: string): MorayBucketDef {
        return this.defs.find((d) => d.name === bucket) as MorayBucketDef;
    }

    /**
     * `def`'s pending fields: those its reindex (or Moray) leaves
     * unindexed, those of its migrations not done yet, and its derived
     * fields until its start-up sweep is done.
     */
    private pendingOf(def: MorayBucketDef): string[] {
        const held = this.migrations
            .filter((m) => m.bucket === def.name && this.pendingMigrations.has(m.number))
            .flatMap((m) => m.pendingFields(def as BucketDef));
        const swept = this.sweepPending.has(def.name) ? Object.keys(def.derived ?? {}) : [];
        return [...new Set([...(this.indexing.get(def.name) ?? []), ...held, ...swept])];
    }

    /** What `def` does next: its next migration, its reindex, its start-up sweep, or nothing. */
    private nextPhase(def: MorayBucketDef): BucketPhase {
        const next = this.migrations.find((m) => m.bucket === def.name && this.pendingMigrations.has(m.number));
        if (next) {
            return next.phase;
        }
        return this.reindexPending.has(def.name) ? 'reindexing' : this.sweepPending.has(def.name) ? 'sweeping' : 'ready';
    }

    /** Record `m`'s progress in `def`'s status (`s`: its state, for the derived fields' backfill). */
    private migrationProgress(def: MorayBucketDef, m: Migration, p: MigrationProgress, s: MigrationState | null): void {
        const state = this.states.get(def.name) as BucketStatus;
        state.migrations = state.migrations.map((x) => (x.number === m.number ? p : x));
        if (m.fillsDerived && s) {
            state.backfill = { ...asBackfillState(s), rate: p.rate };
        }
    }

    /** Sweep the buckets with derived fields again in sweepEveryMs, and so on (until stop()). */
    private scheduleSweeps(): void {
        const defs = this.defs.filter(hasDerived);
        if (this.sweepEveryMs <= 0 || defs.length === 0 || this.retry.stopped) {
            return;
        }
        this.sweepTimer = setTimeout(() => {
            this.sweepTimer = null;
            void (async () => {
                for (const def of defs) {
                    const mark = await this.retry.once(() => loadSweepMark(this.client, this.metaBucket, def.name));
                    await this.sweepBucket(def, mark ?? sweepStartFor(this.states.get(def.name)?.backfill?.startedAt), false);
                }
            })()
                .catch((err: unknown) => {
                    // No retries here: the next sweep starts from the same mark.
                    if (err instanceof StoreUnavailableError && !(err instanceof Stopped)) {
                        this.log.warn({ err }, 'moray sweep failed; the next one tries again');
                    } else if (!(err instanceof Stopped)) {
                        this.log.error({ err }, 'moray sweep failed; the next one tries again');
                    }
                })
                .finally(() => this.scheduleSweeps());
        }, this.sweepEveryMs);
        this.sweepTimer.unref();
    }

    /**
     * Sweep `def` from `from` (a Moray `_mtime`). At start-up (`startup`),
     * its derived fields are pending until the sweep is done; later sweeps
     * leave them trusted.
     */
    private async sweepBucket(def: MorayBucketDef, from: number, startup: boolean, after?: MigrationRun): Promise<void> {
        const state = this.states.get(def.name) as BucketStatus;
        if (startup) {
            state.phase = 'sweeping';
        }
        const t0 = Date.now();
        const deps: SweepDeps = {
            client: this.client,
            def: def as BucketDef,
            metaBucket: this.metaBucket,
            pageSize: this.sweepPageSize,
            retrying: startup ? (what, fn) => this.retry.retrying(what, fn) : (_what, fn) => this.retry.once(fn),
            onProgress: (p) => {
                state.sweep = p;
            },
        };
        const indexed = !Object.keys(def.derived ?? {}).some((f) => this.indexing.get(def.name)?.includes(f));
        const done = after
            ? await runCatchUp(deps, { clock: after.clock, resumedAt: after.resumedAt, startedAt: after.state.startedAt, ranges: after.ranges, indexed })
            : await runSweep(deps, from);
        if (startup) {
            this.sweepPending.delete(def.name);
            state.pendingFields = this.pendingOf(def);
            state.phase = this.nextPhase(def);
        }
        if (startup || done.rewritten > 0) {
            this.log.info(
                { bucket: def.name, from: done.from, checked: done.checked, rewritten: done.rewritten, ms: Date.now() - t0 },
                'swept rows changed since the last sweep for missing index copies',
            );
        }
    }

    /** Run (or resume) migration `m` of `def` to its end. */
    private async migrate(def: MorayBucketDef, m: Migration, from: MigrationState | null): Promise<MigrationRun> {
        const state = this.states.get(def.name) as BucketStatus;
        state.phase = m.phase;
        const what = { bucket: def.name, migration: m.number, name: m.name };
        this.log.info(
            { ...what, fields: m.pendingFields(def as BucketDef), resumeAfter: from?.version === m.version ? from.cursor : 0 },
            'running data migration',
        );
        let lastLog = 0;
        const done = await runMigration(
            {
                client: this.client,
                def: def as BucketDef,
                metaBucket: this.metaBucket,
                batchSize: this.backfillBatchSize,
                depth: this.backfillDepth,
                retrying: (w, fn) => this.retry.retrying(w, fn),
                onProgress: (p, s) => {
                    this.migrationProgress(def, m, p, s);
                    if (Date.now() - lastLog >= 5000) {
                        lastLog = Date.now();
                        this.log.info(
                            { ...what, scanned: p.scanned, rewritten: p.rewritten, cursor: p.cursor, rowsPerSecond: p.rate },
                            'running data migration: progress',
                        );
                    }
                },
            },
            m,
            from,
        );
        this.pendingMigrations.delete(m.number);
        if (m.fillsDerived) {
            this.backfilled.add(def.name);
        }
        state.pendingFields = this.pendingOf(def);
        state.phase = this.nextPhase(def);
        const rate = state.migrations.find((x) => x.number === m.number)?.rate ?? 0;
        this.log.info({ ...what, scanned: done.state.scanned, rewritten: done.state.rewritten, rowsPerSecond: rate }, 'running data migration: done');
        return done;
    }

    /** Reindex `def`; then its pending migrations and start-up sweep follow. */
    private async reindexBucket(def: MorayBucketDef): Promise<void> {
        const state = this.states.get(def.name) as BucketStatus;
        this.log.info({ bucket: def.name, fields: state.pendingFields }, 'reindexing moray bucket');
        await reindexAll(this.client, def.name, this.batchSize, this.retry, this.log, (n) => (state.reindexed += n));
        // The reindex is complete: only fields Moray does not index stay
        // pending, and those of the migrations and the sweep still to come.
        const b = await this.retry.retrying(`reload bucket ${def.name}`, () => this.client.getBucket(def.name));
        if (b) {
            this.indexing.set(def.name, [...new Set([...reindexFields(b), ...Object.keys(def.index).filter((f) => f !== 'uuid' && !(f in b.index))])]);
            state.pendingFields = this.pendingOf(def);
        }
        state.version = b?.version ?? state.version;
        this.reindexPending.delete(def.name);
        state.phase = this.nextPhase(def);
        this.log.info({ bucket: def.name, reindexed: state.reindexed }, 'reindexing moray bucket: done');
    }
}

function hasDerived(def: MorayBucketDef): boolean {
    return Object.keys(def.derived ?? {}).length > 0;
}
