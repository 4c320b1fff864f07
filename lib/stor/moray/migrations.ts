// Numbered data migrations of Moray buckets: rows an older SAPI wrote,
// rewritten into the shape this SAPI expects, once per deployment.
//
// A migration has a number (its order, and the name of its progress in
// `sapi_meta`: `migration.<number>`), a name for people, the bucket it
// rewrites and the bucket version it is for, and a batch step: from a cursor,
// read one batch, rewrite the rows that need it (each put conditional on the
// etag it read, so a write made meanwhile is never undone), and say where the
// next batch starts. The runner saves the progress after every batch, so a
// restart resumes at the saved cursor; a migration saved as done for its
// version is never run again, and one saved for an older version starts over.
// A bucket this process creates holds no row an older SAPI wrote: every
// migration of it is recorded done at once. Several SAPIs may run one at
// once: the conditional puts keep them from undoing each other's work.
//
// The initializer (buckets-init.ts) runs the pending ones in number order
// right after the bucket update, before Moray's reindex: a row a migration
// rewrites gets every index column of the new version and its `_rver` from
// that write, so the reindex only does the rows the migrations left. A
// migration's pendingFields are searched client-side while it runs (the
// store stays exact). The runner pipelines the batches: the next batch is
// read while a few batches' writes are under way (one Moray batch, one
// PostgreSQL transaction, each), and progress is saved in `_id` order.
//
// The sweep of rows SAPI 2.1.2 writes after the backfill (sweep.ts) is not a
// migration: it never finishes. It runs at every start and every few
// minutes, its cursor is a time mark that only moves forward, and it follows
// the backfill rather than replacing it; so it stays a repair beside the
// migrations, as the change feed's repairer (repair.ts) does.

import { randomUUID } from 'node:crypto';

import { BUCKETS, staleIndexCopies, withIndexCopies, type BucketDef } from '../buckets.js';
import type { JsonObject } from '../store.js';
import { backfillMetaKey, parseBackfillState, rewriteRange, savedProgress, type BackfillState, type BatchStamp, type RangeWrite } from './backfill.js';
import type { MorayClient } from './client.js';
import { OVERLAP_MS } from './feed.js';
import { afterId } from './filter.js';

/** What one batch step may use. */
export interface MigrationStepContext {
    client: MorayClient;
    /** The definition of the bucket the migration rewrites. */
    def: BucketDef;
    /** Rows per batch. */
    batchSize: number;
    /** A row the batch's writes may end with (its `_mtime` then tells when they were made; rewriteRange). */
    stamp?: BatchStamp | undefined;
}

/** What one batch step did, and where the next starts. */
export interface MigrationBatch {
    scanned: number;
    rewritten: number;
    cursor: number;
    /** Nothing is left after this batch. */
    done: boolean;
    /**
     * The batch's writes, when the step leaves them to the runner: it makes
     * them (retried) while it reads the next batches, a few batches at once.
     */
    write?: (() => Promise<RangeWrite>) | undefined;
}

export interface Migration {
    readonly number: number;
    readonly name: string;
    readonly bucket: string;
    /** The bucket version whose rows it rewrites (it applies to a bucket defined at this version or later). */
    readonly version: number;
    /** The bucket's phase while it runs. */
    readonly phase: 'backfilling' | 'migrating';
    /**
     * It gives rows their derived index copies: its progress is the
     * bucket's `backfill` status, and the change feed's repairer leaves the
     * bucket's rows to it until it is done.
     */
    readonly fillsDerived?: boolean;
    /** Where an earlier SAPI-TS kept this migration's progress: read when none is saved under the number, and kept up to date beside it. */
    readonly legacyMetaKey?: string;
    /** Index fields a server-side filter must not rely on until it is done. */
    pendingFields(def: BucketDef): string[];
    /**
     * One batch from `cursor` (0: the start). It must be safe to run again
     * from the same cursor (it is, after a failure or a restart).
     */
    step(ctx: MigrationStepContext, cursor: number): Promise<MigrationBatch>;
}

/** A migration that reads the bucket in `_id` order and rewrites each row `fix` changes (null: leave it). */
export function rowMigration(spec: {
    number: number;
    name: string;
    bucket: string;
    version: number;
    phase?: 'backfilling' | 'migrating';
    fillsDerived?: boolean;
    legacyMetaKey?: string;
    pendingFields?: (def: BucketDef) => string[];
    fix: (def: BucketDef, value: JsonObject) => JsonObject | null;
}): Migration {
    const { fix } = spec;
    return {
        number: spec.number,
        name: spec.name,
        bucket: spec.bucket,
        version: spec.version,
        phase: spec.phase ?? 'migrating',
        ...(spec.fillsDerived !== undefined ? { fillsDerived: spec.fillsDerived } : {}),
        ...(spec.legacyMetaKey !== undefined ? { legacyMetaKey: spec.legacyMetaKey } : {}),
        pendingFields: spec.pendingFields ?? (() => []),
        step: async ({ client, def, batchSize, stamp }, cursor) => {
            const rows = await client.findAll(def.name, afterId({ all: true }, cursor, def), {
                limit: batchSize,
                sort: { attribute: '_id', order: 'ASC' },
            });
            const last = rows[rows.length - 1];
            return {
                scanned: rows.length,
                rewritten: 0,
                cursor: last ? Number(last._id) : cursor,
                done: rows.length < batchSize,
                // Each row read once, each that needs it written once (conditional on the etag read).
                write: () => rewriteRange(client, def.name, rows, (v) => fix(def, v), stamp),
            };
        },
    };
}

/**
 * Migration 1: instances written by SAPI 2.1.2 keep their server and image
 * only inside `params`; Moray fills an index column only from a top-level
 * field, so such a row is invisible to a search on that column until it has
 * its top-level copies (backfill.ts).
 */
export const DERIVED_COPIES: Migration = rowMigration({
    number: 1,
    name: 'instance index copies',
    bucket: BUCKETS.instances.name,
    version: BUCKETS.instances.version,
    phase: 'backfilling',
    fillsDerived: true,
    legacyMetaKey: backfillMetaKey(BUCKETS.instances.name),
    pendingFields: (def) => Object.keys(def.derived ?? {}),
    fix: (def, value) => (staleIndexCopies(def, value).length > 0 ? withIndexCopies(def, value) : null),
});

/** Every migration, in the order they run. */
export const MIGRATIONS: readonly Migration[] = [DERIVED_COPIES];

// ---- progress

/** Where a migration's progress is kept in `sapi_meta`. */
export function migrationMetaKey(number: number): string {
    return `migration.${number}`;
}

/** What `sapi_meta` keeps about one migration. */
export interface MigrationState {
    number: number;
    name: string;
    bucket: string;
    /** The migration's bucket version when it was saved. */
    version: number;
    /** Where the next batch starts (for row migrations, the last `_id` done). */
    cursor: number;
    done: boolean;
    /** Rows read and rows rewritten so far (over every run). */
    scanned: number;
    rewritten: number;
    startedAt: string;
    finishedAt?: string;
}

/** Where a migration stands, as the initializer's status shows it. */
export interface MigrationProgress {
    number: number;
    name: string;
    bucket: string;
    state: 'pending' | 'running' | 'done';
    cursor: number;
    scanned: number;
    rewritten: number;
    /** Rows per second of this process's run (0 before its first batch, or when it did not run here). */
    rate: number;
    startedAt?: string;
    finishedAt?: string;
}

export function progressOf(m: Migration, s: MigrationState | null, state: MigrationProgress['state'], rate = 0): MigrationProgress {
    return {
        number: m.number,
        name: m.name,
        bucket: m.bucket,
        state,
        cursor: s?.cursor ?? 0,
        scanned: s?.scanned ?? 0,
        rewritten: s?.rewritten ?? 0,
        rate,
        ...(s ? { startedAt: s.startedAt } : {}),
        ...(s?.finishedAt ? { finishedAt: s.finishedAt } : {}),
    };
}

/** The state as an earlier SAPI-TS kept it under `legacyMetaKey`. */
export function asBackfillState(s: MigrationState): BackfillState {
    return {
        version: s.version,
        lastId: s.cursor,
        done: s.done,
        scanned: s.scanned,
        rewritten: s.rewritten,
        startedAt: s.startedAt,
        ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
    };
}

function fromBackfillState(m: Migration, b: BackfillState): MigrationState {
    return {
        number: m.number,
        name: m.name,
        bucket: m.bucket,
        version: b.version,
        cursor: b.lastId,
        done: b.done,
        scanned: b.scanned,
        rewritten: b.rewritten,
        startedAt: b.startedAt,
        ...(b.finishedAt ? { finishedAt: b.finishedAt } : {}),
    };
}

function parseState(m: Migration, text: string): MigrationState | null {
    try {
        const s = JSON.parse(text) as Partial<MigrationState>;
        if (typeof s.version !== 'number' || typeof s.cursor !== 'number') {
            return null;
        }
        return {
            number: m.number,
            name: m.name,
            bucket: m.bucket,
            version: s.version,
            cursor: s.cursor,
            ...savedProgress(s),
        };
    } catch {
        return null;
    }
}

/**
 * The progress saved for `m`, or null. None under its number but some under
 * its legacy key (an earlier SAPI-TS's): that one, saved forward under the
 * number.
 */
export async function loadMigrationState(client: MorayClient, metaBucket: string, m: Migration): Promise<MigrationState | null> {
    const rec = await client.getObject(metaBucket, migrationMetaKey(m.number));
    const text = rec?.value.value;
    if (typeof text === 'string') {
        return parseState(m, text);
    }
    if (m.legacyMetaKey === undefined) {
        return null;
    }
    const old = await client.getObject(metaBucket, m.legacyMetaKey);
    const oldText = old?.value.value;
    const b = typeof oldText === 'string' ? parseBackfillState(oldText) : null;
    if (!b) {
        return null;
    }
    const s = fromBackfillState(m, b);
    await client.putObject(metaBucket, migrationMetaKey(m.number), { value: JSON.stringify(s) });
    return s;
}

/** Save `s` under `m`'s number, and under its legacy key (an earlier SAPI-TS, after a rollback, then finds it too). */
export async function saveMigrationState(client: MorayClient, metaBucket: string, m: Migration, s: MigrationState): Promise<void> {
    await client.putObject(metaBucket, migrationMetaKey(m.number), { value: JSON.stringify(s) });
    if (m.legacyMetaKey !== undefined) {
        await client.putObject(metaBucket, m.legacyMetaKey, { value: JSON.stringify(asBackfillState(s)) });
    }
}

/** A finished migration, for a bucket no older SAPI wrote to (a new one). */
export function finishedMigrationState(m: Migration): MigrationState {
    const now = new Date().toISOString();
    return {
        number: m.number,
        name: m.name,
        bucket: m.bucket,
        version: m.version,
        cursor: 0,
        done: true,
        scanned: 0,
        rewritten: 0,
        startedAt: now,
        finishedAt: now,
    };
}

/** Whether `s` says `m` is done. */
export function isDone(m: Migration, s: MigrationState | null): boolean {
    return s !== null && s.done && s.version >= m.version;
}

export interface MigrationRunDeps {
    client: MorayClient;
    def: BucketDef;
    metaBucket: string;
    batchSize: number;
    /** Batches whose writes may be under way at once, while the next is read (default 1). */
    depth?: number | undefined;
    /** Wraps each Moray call (retries transient errors). */
    retrying: <R>(what: string, fn: () => Promise<R>) => Promise<R>;
    onProgress: (p: MigrationProgress, s: MigrationState) => void;
}

/** One batch's rows as this run wrote them: `_id` in (after, last]. */
export interface WrittenRange {
    after: number;
    last: number;
    /** See RangeWrite: a change to a rewritten row at or after this `_mtime` is someone else's (null: unknown). */
    since: number | null;
    /** Rows read and left as they were. */
    untouched: readonly string[];
}

/** What one run of a migration did: its final state, and what a catch-up after it needs. */
export interface MigrationRun {
    state: MigrationState;
    /** The cursor the run began at (rows up to it were done by an earlier run). */
    resumedAt: number;
    /** Moray's clock a little before the run read anything (a change since is looked for by a catch-up). */
    clock: number;
    /** Every batch of this run, in `_id` order, from resumedAt to the end. */
    ranges: WrittenRange[];
}

/** Moray's clock now, less the skew allowed between Moray processes: a put to `metaBucket` and its `_mtime` read back. */
async function morayClockBefore(client: MorayClient, metaBucket: string, key: string): Promise<number> {
    await client.putObject(metaBucket, key, { value: new Date().toISOString() });
    const mtime = Number((await client.getObject(metaBucket, key))?._mtime);
    if (!Number.isFinite(mtime)) {
        throw new Error(`moray ${metaBucket}/${key}: no _mtime`);
    }
    return Math.max(0, mtime - OVERLAP_MS);
}

/**
 * Run (or resume, from `from`) migration `m` until it is done; resolves
 * with the run (its final state, and the ranges it wrote). Batches are
 * pipelined: while up to `depth` batches' writes are under way, the next
 * batch is read; progress is saved in `_id` order, each time a batch and
 * every one before it are written, so a restart resumes after the last
 * batch saved (a batch written again then finds its rows done).
 */
export async function runMigration(deps: MigrationRunDeps, m: Migration, from: MigrationState | null): Promise<MigrationRun> {
    const { client, def, metaBucket, batchSize, retrying } = deps;
    const depth = Math.max(1, Math.floor(deps.depth ?? 1));
    const state: MigrationState =
        from && from.version === m.version
            ? { ...from, done: false }
            : {
                  number: m.number,
                  name: m.name,
                  bucket: m.bucket,
                  version: m.version,
                  cursor: 0,
                  done: false,
                  scanned: 0,
                  rewritten: 0,
                  startedAt: new Date().toISOString(),
              };
    delete state.finishedAt;
    const what = `migration ${m.number} (${m.name}) of ${def.name}`;
    const key = migrationMetaKey(m.number);
    const clock = await retrying(`${what}: read moray's clock`, () => morayClockBefore(client, metaBucket, `${key}.clock`));
    const run: MigrationRun = { state, resumedAt: state.cursor, clock, ranges: [] };
    const t0 = Date.now();
    let scannedHere = 0;
    const report = (): void => {
        const secs = (Date.now() - t0) / 1000;
        deps.onProgress(progressOf(m, state, state.done ? 'done' : 'running', secs > 0 ? Math.round(scannedHere / secs) : 0), { ...state });
    };
    report();
    // Each in-flight batch writes its own stamp row (this run's, so another SAPI's cannot be read for it).
    const tag = randomUUID().slice(0, 8);
    const stamps = Array.from({ length: depth }, (_, i): BatchStamp => ({ bucket: metaBucket, key: `${key}.stamp.${tag}.${i}` }));
    /** Batches read and not yet saved; settled in order by `chain`. */
    let inFlight = 0;
    let chain: Promise<void> = Promise.resolve();
    let freed: (() => void) | null = null;
    let cursor = state.cursor;
    for (let n = 0; ; n++) {
        while (inFlight >= depth) {
            await new Promise<void>((resolve, reject) => {
                freed = resolve;
                chain.catch(reject);
            });
        }
        const after = cursor;
        const stamp = stamps[n % depth];
        const b = await retrying(`${what}: batch after ${after}`, () => m.step({ client, def, batchSize, stamp }, after));
        const write = b.write;
        const written = write ? retrying(`${what}: write after ${after}`, write) : Promise.resolve(null);
        written.catch(() => undefined);
        inFlight++;
        chain = chain.then(async () => {
            const w = await written;
            state.cursor = b.cursor;
            state.scanned += b.scanned;
            state.rewritten += b.rewritten + (w?.rewritten ?? 0);
            scannedHere += b.scanned;
            if (b.cursor > after) {
                run.ranges.push({ after, last: b.cursor, since: w?.since ?? null, untouched: w?.untouched ?? [] });
            }
            if (b.done) {
                state.done = true;
                state.finishedAt = new Date().toISOString();
            }
            await retrying(`${what}: save progress`, () => saveMigrationState(client, metaBucket, m, state));
            report();
            inFlight--;
            const f = freed;
            freed = null;
            f?.();
        });
        // Seen here when it fails (Stopped); a failure is thrown by the wait above or the last await.
        chain.catch(() => undefined);
        cursor = b.cursor;
        if (b.done) {
            break;
        }
    }
    await chain;
    // The stamp rows are of no use now (one left behind, by a failure, is harmless).
    await Promise.all(stamps.map((s) => client.delObject(s.bucket, s.key).catch(() => undefined)));
    return run;
}
