// The change feed's repairer: rows SAPI 2.1.2 writes while SAPI-TS runs
// (from another zone during an update, or after a rollback and a new
// upgrade) carry an instance's server and image only inside `params`, so
// Moray's index columns, filled from the top-level copies, miss them or hold
// a stale value. The feed (feed.ts) shows this repairer every row it reads;
// each row whose copies are stale is rewritten with them, by a put
// conditional on the `_etag` the feed read: a row written meanwhile is left
// to whoever wrote it (a SAPI-TS writes the copies itself; a later 2.1.2
// write is read by a later poll). Nothing is repaired in a bucket until its
// backfill is done (the backfill does those rows). The writes run beside the
// polls, one batch at a time; rows read while one is under way wait for the
// next.

import type { BucketDef } from '../buckets.js';
import { staleIndexCopies } from '../buckets.js';
import { rewriteIfUnchanged } from './backfill.js';
import type { MorayClient } from './client.js';
import type { ChangedRow, RowObserver } from './feed.js';

export interface RepairLogger {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
}

export interface IndexRepairerOptions {
    /** The Moray client (throws once the store is closed). */
    client: () => MorayClient;
    /** The buckets with derived index fields. */
    defs: readonly BucketDef[];
    /** Whether `bucket`'s backfill is done (before that, its rows are left to it). */
    backfilled: (bucket: string) => boolean;
    log?: RepairLogger | undefined;
}

/** How long a row rewritten (or found changed) is not tried again at the etag it was read with. */
const REMEMBER_MS = 10_000;

export class IndexRepairer implements RowObserver {
    private readonly defs: Map<string, BucketDef>;
    /** Stale rows waiting: bucket → key → the row as last read. */
    private queued = new Map<string, Map<string, ChangedRow>>();
    /** `<bucket>/<key>/<etag>` handled lately → when. */
    private readonly handled = new Map<string, number>();
    private running: Promise<void> | null = null;
    private failing = false;
    /** Rows rewritten so far. */
    repaired = 0;

    constructor(private readonly opts: IndexRepairerOptions) {
        this.defs = new Map(opts.defs.filter((d) => Object.keys(d.derived ?? {}).length > 0).map((d) => [d.name, d]));
    }

    rowsRead(bucket: string, rows: readonly ChangedRow[]): void {
        const def = this.defs.get(bucket);
        if (!def || !this.opts.backfilled(bucket)) {
            return;
        }
        const now = Date.now();
        for (const [k, at] of this.handled) {
            if (now - at > REMEMBER_MS) {
                this.handled.delete(k);
            }
        }
        for (const r of rows) {
            if (staleIndexCopies(def, r.value).length === 0 || this.handled.has(`${bucket}/${r.key}/${r.etag}`)) {
                continue;
            }
            let q = this.queued.get(bucket);
            if (!q) {
                q = new Map();
                this.queued.set(bucket, q);
            }
            q.set(r.key, r);
        }
        if (this.queued.size > 0 && this.running === null) {
            this.running = this.drain().finally(() => {
                this.running = null;
            });
        }
    }

    /** Resolves once nothing is waiting or being written. */
    async idle(): Promise<void> {
        while (this.running !== null) {
            await this.running;
        }
    }

    private async drain(): Promise<void> {
        while (this.queued.size > 0) {
            const batch = this.queued;
            this.queued = new Map();
            for (const [bucket, rows] of batch) {
                const def = this.defs.get(bucket) as BucketDef;
                const list = [...rows.values()];
                try {
                    const n = await rewriteIfUnchanged(
                        this.opts.client(),
                        def,
                        list.map((r) => ({ key: r.key, value: r.value, _etag: r.etag })),
                    );
                    const at = Date.now();
                    for (const r of list) {
                        this.handled.set(`${bucket}/${r.key}/${r.etag}`, at);
                    }
                    this.repaired += n;
                    this.failing = false;
                    if (n > 0) {
                        this.opts.log?.info(
                            { bucket, rewritten: n, keys: list.slice(0, 10).map((r) => r.key) },
                            'rows written without their index copies (by SAPI 2.1.2) given them',
                        );
                    }
                } catch (err) {
                    // Left for a later poll that reads them again, or the next sweep.
                    if (!this.failing) {
                        this.failing = true;
                        this.opts.log?.warn(
                            { err, bucket, rows: list.length },
                            'could not give rows their index copies; later polls and the next sweep try again',
                        );
                    }
                }
            }
        }
    }
}
