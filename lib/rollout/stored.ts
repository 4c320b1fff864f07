// Rollouts as the store keeps them: listed as summaries (the ones this
// process drives as they are now), and old finished ones deleted.

import type Logger from 'bunyan';

import { invalidArgument } from '../errors.js';
import type { Ctx } from '../model/context.js';
import { BUCKETS } from '../stor/buckets.js';
import { ALL, eq, oneOf, type Store } from '../stor/store.js';
import type { Clock } from './clock.js';
import { FINAL_STATES, type Rollout, type RolloutState, type RolloutSummary } from './types.js';
import { summaryOf } from './views.js';

const BUCKET = BUCKETS.rollouts.name;

export interface ListRolloutsQuery {
    service_uuid?: string | undefined;
    state?: RolloutState | undefined;
    limit?: number | undefined;
    marker?: string | undefined;
}

/**
 * Summaries, newest first, filtered by service and state, `limit` at a time
 * after `marker`; `live` gives the rollouts this process drives (newer than
 * what is stored).
 */
export async function listRollouts(store: Store, q: ListRolloutsQuery, live: (uuid: string) => Rollout | undefined): Promise<RolloutSummary[]> {
    const page = await store.find<Rollout>(BUCKET, q.state ? eq('state', q.state) : ALL);
    const all = page.items
        .map((s) => live(s.value.uuid) ?? s.value)
        .filter((r) => q.state === undefined || r.state === q.state)
        .filter((r) => q.service_uuid === undefined || r.service_uuid === q.service_uuid || (r.services ?? []).some((s) => s.service_uuid === q.service_uuid))
        .sort((a, b) => b.created_at.localeCompare(a.created_at) || a.uuid.localeCompare(b.uuid));
    let from = 0;
    if (q.marker !== undefined) {
        const at = all.findIndex((r) => r.uuid === q.marker);
        if (at < 0) {
            throw invalidArgument(`marker ${q.marker} is not a listed rollout`);
        }
        from = at + 1;
    }
    return all.slice(from, q.limit === undefined ? undefined : from + q.limit).map(summaryOf);
}

/**
 * Finished rollouts are kept for `rollouts.keep_days` and at most
 * `rollouts.keep_finished` of them (the newest); older ones are deleted
 * as another one finishes. Running and paused ones are always kept.
 */
export async function pruneFinished(ctx: Ctx, log: Logger, clock: Clock): Promise<void> {
    const keep = ctx.config.rollouts;
    try {
        const finished = (await ctx.store.find<Rollout>(BUCKET, oneOf('state', [...FINAL_STATES]))).items
            .map((s) => s.value)
            .sort((a, b) => (b.finished_at ?? b.created_at).localeCompare(a.finished_at ?? a.created_at));
        const cutoff = clock.now() - keep.keep_days * 24 * 3600 * 1000;
        const old = finished.filter((r, i) => i >= keep.keep_finished || Date.parse(r.finished_at ?? r.created_at) < cutoff);
        for (const r of old) {
            await ctx.store.del(BUCKET, r.uuid).catch(() => undefined);
        }
        if (old.length > 0) {
            log.info({ deleted: old.length, kept: finished.length - old.length }, 'old finished rollouts deleted');
        }
    } catch (err) {
        log.warn({ err }, 'could not prune old finished rollouts');
    }
}
