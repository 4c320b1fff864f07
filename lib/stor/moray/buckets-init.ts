// Moray bucket setup, in the background (VMAPI's lib/moray model):
//
//   1. delete the legacy bucket `sapi_history` if present;
//   2. for each bucket definition: create it if missing (with
//      `options.version`), else update it when the stored version is older
//      (bucket-setup.ts);
//   3. reindex updated buckets, `reindexObjects` in a loop until a call
//      processes nothing;
//   4. backfill buckets with derived index fields (backfill.ts) unless
//      `sapi_meta` says that was done for this version: a bucket this
//      process creates starts done; any other (SAPI 2.1.2's, or one an
//      earlier SAPI-TS upgraded without it) is backfilled;
//   5. sweep those buckets (sweep.ts): the rows changed since the mark kept
//      in `sapi_meta` (rows SAPI 2.1.2 wrote while no SAPI-TS ran) get their
//      copies. With no mark yet, the sweep starts an hour before the
//      backfill began; a bucket this process creates needs none (its mark
//      is now). After start-up, the sweep runs again every sweepEveryMs, as
//      a backstop for what the change feed's repairer misses.
//
// Every Moray call is retried with exponential backoff until it succeeds
// (or stop() is called; retrier.ts). Until a bucket's reindex is complete,
// the index fields it adds are reported by pendingFields(): the store must not trust
// them in a server-side filter (rows written before the update are not in
// the new index yet), and filters on them client-side instead. Derived
// fields stay pending until their backfill and the start-up sweep are done
// (the later sweeps leave them trusted: the feed repairs what it reads).

import type { BucketDef } from '../buckets.js';
import { StoreUnavailableError } from '../errors.js';
import { finishedState, loadBackfillState, runBackfill, saveBackfillState, type BackfillProgress, type BackfillState } from './backfill.js';
import { reindexFields, setupBucket, type MorayBucketDef } from './bucket-setup.js';
import type { MorayClient } from './client.js';
import { Retrier, Stopped, type InitLogger } from './retrier.js';
import { loadSweepMark, morayNow, runSweep, saveSweepMark, SWEEP_EVERY_MS, sweepStartFor, type SweepProgress } from './sweep.js';

export { bucketConfig, type MorayBucketDef } from './bucket-setup.js';
export type { InitLogger } from './retrier.js';

export type BucketPhase = 'unknown' | 'reindexing' | 'backfilling' | 'sweeping' | 'ready';

export interface BucketStatus {
    phase: BucketPhase;
    /** Version of the bucket in Moray, once known. */
    version: number | null;
    /** Index fields not (yet) usable in a server-side filter. */
    pendingFields: string[];
    /** Rows reindexed by this process. */
    reindexed: number;
    /** The derived-field backfill, for buckets that have derived fields. */
    backfill: BackfillProgress | null;
    /** The last (or current) sweep of rows changed since the mark, for buckets that have derived fields. */
    sweep: SweepProgress | null;
}

export interface BucketsInitOptions {
    client: MorayClient;
    buckets: readonly (BucketDef | MorayBucketDef)[];
    log?: InitLogger | undefined;
    /** Rows per reindexObjects call (default 100). */
    reindexBatchSize?: number | undefined;
    /** Rows per backfill batch (default 500: one findObjects page, one Moray batch). */
    backfillBatchSize?: number | undefined;
    /** Rows per sweep page (default: backfillBatchSize). */
    sweepPageSize?: number | undefined;
    /** Between sweeps after start-up (default SWEEP_EVERY_MS; 0: none). */
    sweepEveryMs?: number | undefined;
    /** The bucket holding service settings and backfill progress. */
    metaBucket?: string | undefined;
    /** Backoff between retries (default 100 ms doubling to 5 s). */
    retryMinDelayMs?: number | undefined;
    retryMaxDelayMs?: number | undefined;
    /** Buckets deleted when present (default ['sapi_history']). */
    legacyBuckets?: readonly string[] | undefined;
}

const nullLog: InitLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

interface Deferred {
    promise: Promise<void>;
    resolve: () => void;
    reject: (err: Error) => void;
}

function deferred(): Deferred {
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
    });
    // A stop() before anyone waits must not be an unhandled rejection.
    promise.catch(() => undefined);
    return { promise, resolve, reject };
}

export class BucketsInitializer {
    private readonly client: MorayClient;
    private readonly defs: MorayBucketDef[];
    private readonly log: InitLogger;
    private readonly batchSize: number;
    private readonly backfillBatchSize: number;
    private readonly sweepPageSize: number;
    private readonly sweepEveryMs: number;
    private readonly metaBucket: string;
    /** Retries every Moray call, until stop(). */
    private readonly retry: Retrier;
    private readonly legacy: readonly string[];
    private readonly states = new Map<string, BucketStatus>();
    private readonly setup = deferred();
    private readonly reindex = deferred();
    private started = false;
    /** Buckets whose derived fields are backfilled (their copies are kept up to date from then on). */
    private readonly backfilled = new Set<string>();
    private sweepTimer: NodeJS.Timeout | null = null;

    constructor(opts: BucketsInitOptions) {
        this.client = opts.client;
        this.defs = opts.buckets.map((b) => ({ name: b.name, index: b.index, version: b.version, derived: b.derived }));
        this.log = opts.log ?? nullLog;
        this.batchSize = opts.reindexBatchSize ?? 100;
        this.backfillBatchSize = opts.backfillBatchSize ?? 500;
        this.sweepPageSize = opts.sweepPageSize ?? this.backfillBatchSize;
        this.sweepEveryMs = opts.sweepEveryMs ?? SWEEP_EVERY_MS;
        this.metaBucket = opts.metaBucket ?? 'sapi_meta';
        this.retry = new Retrier(this.client, this.log, opts.retryMinDelayMs ?? 100, opts.retryMaxDelayMs ?? 5000);
        this.legacy = opts.legacyBuckets ?? ['sapi_history'];
        for (const def of this.defs) {
            this.states.set(def.name, {
                phase: 'unknown',
                version: null,
                // Until Moray tells us, no index is trusted but the key's.
                pendingFields: Object.keys(def.index).filter((f) => f !== 'uuid'),
                reindexed: 0,
                backfill: null,
                sweep: null,
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

    /** Resolves when every bucket is set up, fully reindexed, backfilled and swept once. */
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
            out[name] = { ...s, pendingFields: [...s.pendingFields], ...(s.sweep ? { sweep: { ...s.sweep } } : {}) };
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
        /** Per bucket: the fields pending whatever the backfill says. */
        const indexing = new Map<string, string[]>();
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
            // Derived fields stay pending until the backfill state is known.
            const derived = Object.keys(def.derived ?? {});
            indexing.set(def.name, [...new Set([...active, ...missing])]);
            state.pendingFields = [...new Set([...active, ...missing, ...derived])];
            if (Object.keys(b.reindexActive).length > 0) {
                state.phase = 'reindexing';
                toReindex.push(def);
            } else {
                state.phase = 'ready';
            }
        }
        // Which buckets still need their derived fields backfilled, and which swept.
        const toBackfill: { def: MorayBucketDef; from: BackfillState | null }[] = [];
        /** Where each sweep starts: the saved mark, else decided once the backfill is done. */
        const toSweep = new Map<string, { def: MorayBucketDef; mark: number | null }>();
        const fresh: MorayBucketDef[] = [];
        for (const def of this.defs) {
            if (!hasDerived(def)) {
                continue;
            }
            const state = this.states.get(def.name) as BucketStatus;
            let saved: BackfillState | null;
            if (created.has(def.name)) {
                saved = finishedState(def.version);
                await this.retry.retrying(`record backfill of ${def.name}`, () =>
                    saveBackfillState(this.client, this.metaBucket, def.name, saved as BackfillState),
                );
                fresh.push(def);
            } else {
                saved = await this.retry.retrying(`read backfill state of ${def.name}`, () => loadBackfillState(this.client, this.metaBucket, def.name));
                const mark = await this.retry.retrying(`read sweep mark of ${def.name}`, () => loadSweepMark(this.client, this.metaBucket, def.name));
                toSweep.set(def.name, { def, mark });
            }
            if (saved?.done && saved.version >= def.version) {
                state.backfill = { ...saved, rate: 0 };
                this.backfilled.add(def.name);
                if (created.has(def.name)) {
                    state.pendingFields = indexing.get(def.name) ?? [];
                } else {
                    // Derived fields stay pending until the sweep is done.
                    state.phase = state.phase === 'ready' ? 'sweeping' : state.phase;
                }
            } else {
                state.phase = state.phase === 'ready' ? 'backfilling' : state.phase;
                toBackfill.push({ def, from: saved });
            }
        }
        this.setup.resolve();
        this.log.info({ buckets: this.defs.map((d) => d.name) }, 'moray buckets set up');
        for (const def of toReindex) {
            const next = toBackfill.some((x) => x.def.name === def.name) ? 'backfilling' : toSweep.has(def.name) ? 'sweeping' : 'ready';
            await this.reindexBucket(def, next);
        }
        const backfillStart = new Map<string, string>();
        for (const def of this.defs) {
            const b = this.states.get(def.name)?.backfill;
            if (b) {
                backfillStart.set(def.name, b.startedAt);
            }
        }
        for (const { def, from } of toBackfill) {
            const done = await this.backfillBucket(def, from);
            backfillStart.set(def.name, done.startedAt);
        }
        for (const { def, mark } of toSweep.values()) {
            // No mark yet: from well before the backfill began. A backfill run now also misses
            // what was written behind it meanwhile: from before it began, whatever the mark.
            const since = sweepStartFor(backfillStart.get(def.name));
            const ranNow = toBackfill.some((x) => x.def.name === def.name);
            await this.sweepBucket(def, mark === null || ranNow ? Math.min(mark ?? since, since) : mark, true);
        }
        for (const def of fresh) {
            // Every row of a new bucket has its copies: sweeps start from now.
            const now = await this.retry.retrying(`read moray's clock for ${def.name}`, () => morayNow(this.client, this.metaBucket, def.name));
            await this.retry.retrying(`save sweep mark of ${def.name}`, () => saveSweepMark(this.client, this.metaBucket, def.name, now));
        }
        this.reindex.resolve();
        this.scheduleSweeps();
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
    private async sweepBucket(def: MorayBucketDef, from: number, startup: boolean): Promise<void> {
        const state = this.states.get(def.name) as BucketStatus;
        if (startup) {
            state.phase = 'sweeping';
        }
        const t0 = Date.now();
        const done = await runSweep(
            {
                client: this.client,
                def: def as BucketDef,
                metaBucket: this.metaBucket,
                pageSize: this.sweepPageSize,
                retrying: startup ? (what, fn) => this.retry.retrying(what, fn) : (_what, fn) => this.retry.once(fn),
                onProgress: (p) => {
                    state.sweep = p;
                },
            },
            from,
        );
        if (startup) {
            const derived = new Set(Object.keys(def.derived ?? {}));
            state.pendingFields = state.pendingFields.filter((f) => !derived.has(f));
            state.phase = 'ready';
        }
        if (startup || done.rewritten > 0) {
            this.log.info(
                { bucket: def.name, from: done.from, checked: done.checked, rewritten: done.rewritten, ms: Date.now() - t0 },
                'swept rows changed since the last sweep for missing index copies',
            );
        }
    }

    private async backfillBucket(def: MorayBucketDef, from: BackfillState | null): Promise<BackfillState> {
        const state = this.states.get(def.name) as BucketStatus;
        state.phase = 'backfilling';
        this.log.info(
            { bucket: def.name, fields: Object.keys(def.derived ?? {}), resumeAfterId: from?.version === def.version ? from.lastId : 0 },
            'backfilling derived index fields',
        );
        let lastLog = 0;
        const done = await runBackfill(
            {
                client: this.client,
                def: def as BucketDef,
                metaBucket: this.metaBucket,
                batchSize: this.backfillBatchSize,
                retrying: (what, fn) => this.retry.retrying(what, fn),
                onProgress: (p) => {
                    state.backfill = p;
                    if (Date.now() - lastLog >= 5000) {
                        lastLog = Date.now();
                        this.log.info(
                            { bucket: def.name, scanned: p.scanned, rewritten: p.rewritten, lastId: p.lastId, rowsPerSecond: p.rate },
                            'backfilling derived index fields: progress',
                        );
                    }
                },
            },
            from,
        );
        this.backfilled.add(def.name);
        // Derived fields stay pending: the sweep follows.
        state.phase = 'sweeping';
        this.log.info(
            { bucket: def.name, scanned: done.scanned, rewritten: done.rewritten, rowsPerSecond: state.backfill?.rate ?? 0 },
            'backfilling derived index fields: done',
        );
        return done;
    }

    /** Reindex `def`; `next` is the phase that follows (derived fields stay pending unless it is 'ready'). */
    private async reindexBucket(def: MorayBucketDef, next: 'backfilling' | 'sweeping' | 'ready'): Promise<void> {
        const state = this.states.get(def.name) as BucketStatus;
        this.log.info({ bucket: def.name, fields: state.pendingFields }, 'reindexing moray bucket');
        for (;;) {
            const res = await this.retry.retrying(`reindex bucket ${def.name}`, () => this.client.reindexObjects(def.name, this.batchSize));
            state.reindexed += res.processed;
            if (res.processed === 0) {
                break;
            }
            this.log.info(
                { bucket: def.name, processed: res.processed, total: state.reindexed, remaining: res.remaining },
                'reindexing moray bucket: progress',
            );
        }
        // The reindex is complete: only fields Moray does not index stay
        // pending, and derived fields until their backfill and sweep are done.
        const b = await this.retry.retrying(`reload bucket ${def.name}`, () => this.client.getBucket(def.name));
        const derived = next !== 'ready' ? Object.keys(def.derived ?? {}) : [];
        state.pendingFields = b
            ? [...new Set([...reindexFields(b), ...Object.keys(def.index).filter((f) => f !== 'uuid' && !(f in b.index)), ...derived])]
            : state.pendingFields;
        state.version = b?.version ?? state.version;
        state.phase = next;
        this.log.info({ bucket: def.name, reindexed: state.reindexed }, 'reindexing moray bucket: done');
    }
}

function hasDerived(def: MorayBucketDef): boolean {
    return Object.keys(def.derived ?? {}).length > 0;
}
