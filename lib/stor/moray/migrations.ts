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
// after the reindex. A migration's pendingFields are searched client-side
// while it runs (the store stays exact).
//
// The sweep of rows SAPI 2.1.2 writes after the backfill (sweep.ts) is not a
// migration: it never finishes. It runs at every start and every few
// minutes, its cursor is a time mark that only moves forward, and it follows
// the backfill rather than replacing it; so it stays a repair beside the
// migrations, as the change feed's repairer (repair.ts) does.

import { BUCKETS, staleIndexCopies, withIndexCopies, type BucketDef } from '../buckets.js';
import type { JsonObject } from '../store.js';
import { backfillMetaKey, parseBackfillState, rewriteRows, type BackfillState } from './backfill.js';
import type { MorayClient } from './client.js';
import { afterId } from './filter.js';

/** What one batch step may use. */
export interface MigrationStepContext {
    client: MorayClient;
    /** The definition of the bucket the migration rewrites. */
    def: BucketDef;
    /** Rows per batch. */
    batchSize: number;
}

/** What one batch step did, and where the next starts. */
export interface MigrationBatch {
    scanned: number;
    rewritten: number;
    cursor: number;
    /** Nothing is left after this batch. */
    done: boolean;
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
        step: async ({ client, def, batchSize }, cursor) => {
            const rows = await client.findAll(def.name, afterId({ all: true }, cursor, def), {
                limit: batchSize,
                sort: { attribute: '_id', order: 'ASC' },
            });
            const todo = rows.filter((r) => fix(def, r.value) !== null);
            const rewritten = todo.length > 0 ? await rewriteRows(client, def.name, todo, (v) => fix(def, v)) : 0;
            const last = rows[rows.length - 1];
            return { scanned: rows.length, rewritten, cursor: last ? Number(last._id) : cursor, done: rows.length < batchSize };
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
            done: s.done === true,
            scanned: Number(s.scanned ?? 0),
            rewritten: Number(s.rewritten ?? 0),
            // Unknown: the earliest time there is.
            startedAt: String(s.startedAt ?? new Date(0).toISOString()),
            ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
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
    /** Wraps each Moray call (retries transient errors). */
    retrying: <R>(what: string, fn: () => Promise<R>) => Promise<R>;
    onProgress: (p: MigrationProgress, s: MigrationState) => void;
}

/**
 * Run (or resume, from `from`) migration `m` until it is done; resolves
 * with the final state.
 */
export async function runMigration(deps: MigrationRunDeps, m: Migration, from: MigrationState | null): Promise<MigrationState> {
    const { client, def, metaBucket, batchSize, retrying } = deps;
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
    const t0 = Date.now();
    let scannedHere = 0;
    const report = (): void => {
        const secs = (Date.now() - t0) / 1000;
        deps.onProgress(progressOf(m, state, state.done ? 'done' : 'running', secs > 0 ? Math.round(scannedHere / secs) : 0), { ...state });
    };
    report();
    for (;;) {
        const cursor = state.cursor;
        const b = await retrying(`migration ${m.number} (${m.name}) of ${def.name}: batch after ${cursor}`, () => m.step({ client, def, batchSize }, cursor));
        state.cursor = b.cursor;
        state.scanned += b.scanned;
        state.rewritten += b.rewritten;
        scannedHere += b.scanned;
        if (b.done) {
            state.done = true;
            state.finishedAt = new Date().toISOString();
        }
        await retrying(`migration ${m.number} (${m.name}) of ${def.name}: save progress`, () => saveMigrationState(client, metaBucket, m, state));
        report();
        if (state.done) {
            return state;
        }
    }
}
