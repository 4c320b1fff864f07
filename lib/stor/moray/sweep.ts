// The sweep of a bucket with derived index fields: the rows changed since a
// mark, checked for stale copies and rewritten (backfill.ts explains why a
// row needs its copies).
//
// The backfill gives every row its copies once, but SAPI 2.1.2 keeps writing
// rows with the values only in `params`: while it still runs in another
// zone during an update, or after a rollback to it. While SAPI-TS runs, the
// change feed's repairer (repair.ts) fixes such rows within a poll or two;
// the sweep finds the rest: those written while no SAPI-TS ran (at start-up),
// and those the feed missed (now and then, as a backstop).
//
// What a sweep reads. Moray stamps every write with `_mtime` (its clock, see
// feed.ts), so the rows changed since the mark M are `(_mtime>=M)`, read
// oldest first a page at a time. The next page starts at the last `_mtime`
// of the page before (so rows sharing that `_mtime` across the page boundary
// are read again, never skipped); a page whose rows all share one `_mtime`
// is followed by the rest of that `_mtime` in `_id` order, and the sweep
// goes on after it. No page is found by offset: a rewrite gives its row a
// new `_mtime`, which moves it to the end.
//
// The mark. Before it reads anything, a sweep takes a stamp of Moray's clock
// (it writes a row of `sapi_meta` and reads its `_mtime` back); it reads
// until a page goes past the stamp or the rows run out, and then saves the
// stamp minus overlapMs as the new mark: every write stamped before that
// committed before the sweep read past it (the overlap covers the lag between
// a write's stamp and its commit, and the skew between Moray processes). A
// mark never moves back: several SAPIs may sweep at once, and each one's
// mark holds on its own (the conditional puts keep them from undoing each
// other's rewrites).

import type { BucketDef } from '../buckets.js';
import { staleIndexCopies } from '../buckets.js';
import { EtagConflictError } from '../errors.js';
import { rewriteStale } from './backfill.js';
import type { MorayClient, MorayObject } from './client.js';
import { OVERLAP_MS } from './feed.js';
import { toLdapString } from './filter.js';
import type { WrittenRange } from './migrations.js';

/** Between sweeps of a running SAPI (the backstop for what the change feed misses). */
export const SWEEP_EVERY_MS = 10 * 60 * 1000;
/** How far before the backfill's start a bucket's first sweep begins (clock skew, writes under way). */
export const SWEEP_MARGIN_MS = 60 * 60 * 1000;

/** Where a bucket's sweep mark is kept in `sapi_meta`. */
export function sweepMetaKey(bucket: string): string {
    return `sweep.${bucket}`;
}

/** The row of `sapi_meta` whose `_mtime` tells Moray's clock to a sweep of `bucket`. */
export function sweepClockKey(bucket: string): string {
    return `sweep.${bucket}.clock`;
}

/** Where a sweep stands. */
export interface SweepProgress {
    /** The `_mtime` it started from. */
    from: number;
    /** Rows read (a row met twice, at a page boundary, counts twice) and rows rewritten. */
    checked: number;
    rewritten: number;
    done: boolean;
    startedAt: string;
    finishedAt?: string;
}

export interface SweepDeps {
    client: MorayClient;
    def: BucketDef;
    metaBucket: string;
    /** Rows per findObjects page. */
    pageSize: number;
    /** How far before its clock stamp a sweep saves its mark (default the change feed's OVERLAP_MS). */
    overlapMs?: number | undefined;
    /** Wraps each Moray call (retries transient errors). */
    retrying: <R>(what: string, fn: () => Promise<R>) => Promise<R>;
    onProgress?: ((p: SweepProgress) => void) | undefined;
}

/** The saved mark of `bucket` and the etag of its row, or null. */
async function readMark(client: MorayClient, metaBucket: string, bucket: string): Promise<{ mark: number; etag: string } | null> {
    const rec = await client.getObject(metaBucket, sweepMetaKey(bucket));
    const text = rec?.value.value;
    if (!rec || typeof text !== 'string') {
        return null;
    }
    try {
        const mark = (JSON.parse(text) as { mark?: unknown }).mark;
        return typeof mark === 'number' && Number.isFinite(mark) ? { mark, etag: rec._etag } : null;
    } catch {
        return null;
    }
}

/** The saved mark of `bucket` (a Moray `_mtime`), or null when no sweep has saved one. */
export async function loadSweepMark(client: MorayClient, metaBucket: string, bucket: string): Promise<number | null> {
    return (await readMark(client, metaBucket, bucket))?.mark ?? null;
}

/** Save `mark` for `bucket`, unless a later one is saved already. */
export async function saveSweepMark(client: MorayClient, metaBucket: string, bucket: string, mark: number): Promise<void> {
    for (;;) {
        const cur = await readMark(client, metaBucket, bucket);
        if (cur && cur.mark >= mark) {
            return;
        }
        const value = { value: JSON.stringify({ mark, savedAt: new Date().toISOString() }) };
        try {
            // Conditional: another SAPI saving its mark meanwhile is read again.
            await client.putObject(metaBucket, sweepMetaKey(bucket), value, cur ? { etag: cur.etag } : {});
            return;
        } catch (err) {
            if (!(err instanceof EtagConflictError)) {
                throw err;
            }
        }
    }
}

/** Moray's clock now: a write to `sapi_meta`, and its `_mtime` read back. */
export async function morayNow(client: MorayClient, metaBucket: string, bucket: string): Promise<number> {
    const key = sweepClockKey(bucket);
    await client.putObject(metaBucket, key, { value: new Date().toISOString() });
    const got = await client.getObject(metaBucket, key);
    const mtime = Number(got?._mtime);
    if (!Number.isFinite(mtime)) {
        throw new Error(`moray ${metaBucket}/${key}: no _mtime`);
    }
    return mtime;
}

/** Where a bucket's first sweep starts when no mark is saved: well before its backfill began (0 when that is not known). */
export function sweepStartFor(backfillStartedAt: string | undefined): number {
    const t = backfillStartedAt === undefined ? Number.NaN : Date.parse(backfillStartedAt);
    return Number.isFinite(t) ? Math.max(0, t - SWEEP_MARGIN_MS) : 0;
}

const mtimeOf = (r: MorayObject): number => Number(r._mtime ?? 0);

/** Reads and checks (rewriting stale rows) for one sweep or catch-up. */
interface Pass {
    read: (what: string, filter: string, sort: string) => Promise<MorayObject[]>;
    check: (rows: MorayObject[]) => Promise<void>;
}

function passOf(deps: SweepDeps, p: SweepProgress): Pass {
    const { client, def, pageSize, retrying } = deps;
    return {
        read: (what, filter, sort) =>
            retrying(`sweep ${def.name}: ${what}`, () => client.findAll(def.name, filter, { limit: pageSize, sort: { attribute: sort, order: 'ASC' } })),
        check: async (rows) => {
            const stale = rows.filter((r) => staleIndexCopies(def, r.value).length > 0);
            if (stale.length > 0) {
                p.rewritten += await retrying(`sweep ${def.name}: write`, () => rewriteStale(client, def, stale));
            }
            p.checked += rows.length;
            deps.onProgress?.({ ...p });
        },
    };
}

/** `(&(clause)(more))`, or `clause` alone. */
function both(clause: string, more: string): string {
    return more === '' ? clause : `(&${clause}${more})`;
}

/** The rows changed since `from` (and matching `more`), oldest first, until a page goes past `until` (see above). */
async function sweepChanged(deps: SweepDeps, pass: Pass, from: number, until: number, more = ''): Promise<void> {
    const { pageSize } = deps;
    let cursor = Math.max(0, Math.floor(from));
    for (;;) {
        const rows = await pass.read('read', both(`(_mtime>=${cursor})`, more), '_mtime');
        await pass.check(rows);
        const first = rows[0];
        const last = rows[rows.length - 1];
        if (rows.length < pageSize || !first || !last || mtimeOf(last) > until) {
            return;
        }
        if (mtimeOf(first) < mtimeOf(last)) {
            cursor = mtimeOf(last);
            continue;
        }
        // A whole page of one `_mtime` (in no particular order): all of it by `_id`, then what follows it.
        const m = mtimeOf(last);
        await byId(deps, pass, 'read one _mtime', `(_mtime=${m})${more}`, 0);
        cursor = m + 1;
    }
}

/** Every row matching `filter` (an `and`'s parts) with `_id` above `after`, in `_id` order. */
async function byId(deps: SweepDeps, pass: Pass, what: string, filter: string, after: number, last = Infinity): Promise<void> {
    let lo = after + 1;
    const upTo = Number.isFinite(last) ? `(_id<=${last})` : '';
    for (;;) {
        const rows = await pass.read(what, `(&(_id>=${lo})${upTo}${filter})`, '_id');
        await pass.check(rows);
        const end = rows[rows.length - 1];
        if (rows.length < deps.pageSize || !end) {
            return;
        }
        lo = Number(end._id) + 1;
    }
}

/**
 * Sweep `deps.def` from `from` (a Moray `_mtime`): rewrite every stale row
 * changed since then, and save the new mark. Resolves with the final progress.
 */
export async function runSweep(deps: SweepDeps, from: number): Promise<SweepProgress> {
    const { client, def, metaBucket, retrying } = deps;
    const overlap = deps.overlapMs ?? OVERLAP_MS;
    const p: SweepProgress = { from, checked: 0, rewritten: 0, done: false, startedAt: new Date().toISOString() };
    deps.onProgress?.({ ...p });
    const until = await retrying(`sweep ${def.name}: read moray's clock`, () => morayNow(client, metaBucket, def.name));
    await sweepChanged(deps, passOf(deps, p), from, until);
    return finish(deps, p, Math.max(Math.floor(from), until - overlap));
}

async function finish(deps: SweepDeps, p: SweepProgress, mark: number): Promise<SweepProgress> {
    await deps.retrying(`sweep ${deps.def.name}: save mark`, () => saveSweepMark(deps.client, deps.metaBucket, deps.def.name, mark));
    p.done = true;
    p.finishedAt = new Date().toISOString();
    deps.onProgress?.({ ...p });
    return p;
}

/** More untouched rows than this in one batch: its whole range is read again instead of naming them. */
const MAX_NAMED = 100;

/** What a catch-up after a backfill run needs of it (migrations.ts MigrationRun). */
export interface CatchUpPlan {
    clock: number;
    resumedAt: number;
    /** When the backfill first began (over every run). */
    startedAt: string;
    ranges: readonly WrittenRange[];
    /** Whether Moray's index of the derived fields is complete (reindex done). */
    indexed: boolean;
}

/**
 * The start-up sweep after a backfill that ran here, without reading again
 * the rows it wrote. The backfill read every row; what it may have missed
 * is a change someone else made behind it:
 *
 * - to a row it rewrote, after its batch committed: stamped at or after
 *   the batch's stamp (`since`), so per batch `(_id in its range) and
 *   (_mtime >= since)`, which is only such changes (and the few rows of
 *   the batch that share the stamp's millisecond);
 * - to a row it read and left (or that someone else wrote first), after
 *   the run began: those rows by name, `_mtime >= clock`;
 * - a batch whose stamp is not known: its range, `_mtime >= clock`;
 * - rows an earlier run did (a resumed backfill): changed since the
 *   backfill first began, as a sweep reads them, `_id` up to where this
 *   run began;
 * - a row created without copies whose `_id` came before rows the
 *   backfill had already read (its writer's transaction committed late):
 *   `_mtime >= clock` and a derived field missing, through Moray's index
 *   once it is complete (else the whole sweep from the clock).
 *
 * The mark saved is Moray's clock when the catch-up began, less the overlap.
 */
export async function runCatchUp(deps: SweepDeps, plan: CatchUpPlan): Promise<SweepProgress> {
    const { client, def, metaBucket, retrying } = deps;
    const overlap = deps.overlapMs ?? OVERLAP_MS;
    const p: SweepProgress = { from: plan.clock, checked: 0, rewritten: 0, done: false, startedAt: new Date().toISOString() };
    deps.onProgress?.({ ...p });
    const until = await retrying(`sweep ${def.name}: read moray's clock`, () => morayNow(client, metaBucket, def.name));
    const pass = passOf(deps, p);
    const since = `(_mtime>=${plan.clock})`;
    for (const r of plan.ranges) {
        const named = r.untouched.length > 0 ? `(&${since}${toLdapString({ in: { field: 'uuid', values: [...r.untouched] } })})` : '';
        const changed = r.since === null || r.untouched.length > MAX_NAMED ? since : named === '' ? `(_mtime>=${r.since})` : `(|(_mtime>=${r.since})${named})`;
        await byId(deps, pass, 'read a range the backfill wrote', changed, r.after, r.last);
    }
    if (plan.resumedAt > 0) {
        await sweepChanged(deps, pass, sweepStartFor(plan.startedAt), until, `(_id<=${plan.resumedAt})`);
    }
    const derived = Object.keys(def.derived ?? {});
    if (derived.length > 0 && plan.indexed) {
        const missing = derived.map((f) => `(!(${f}=*))`);
        await byId(deps, pass, 'read rows without copies', `${since}${missing.length > 1 ? `(|${missing.join('')})` : missing.join('')}`, 0);
    } else if (derived.length > 0) {
        await sweepChanged(deps, pass, plan.clock, until);
    }
    return finish(deps, p, Math.max(0, until - overlap));
}
