// Counts, totals and the shapes a rollout is answered in: grouped by
// server, as a summary, as a dry run's preview; and the failure threshold
// read from the items.

import type { ItemState, Rollout, RolloutItem, RolloutPreview, RolloutServer, RolloutSummary, RolloutTotals } from './types.js';

export function previewOf(r: Rollout): RolloutPreview {
    const { uuid: _uuid, state: _state, ...rest } = r;
    const pending = r.items.filter((i) => i.state === 'pending');
    const byAction = new Map<string, number>();
    for (const i of pending) byAction.set(i.action ?? 'upgrade', (byAction.get(i.action ?? 'upgrade') ?? 0) + 1);
    const what = [...byAction].map(([a, n]) => `${n} ${a}${n === 1 ? '' : 's'}`).join(', ');
    const summary =
        pending.length > 0
            ? `${pending.length} of ${r.items.length} item(s) on ${r.totals.servers} server(s) would run: ${what}`
            : `nothing would run: ${nothingReason(r)}`;
    return { ...rest, dry_run: true, state: 'planned', summary, servers: serverView(r.items) };
}

/** Why a plan has nothing to run, in words. */
export function nothingReason(r: Rollout): string {
    const at = r.items.filter((i) => i.reason === 'already at the target image').length;
    const newer = r.items.filter((i) => i.state === 'skipped' && i.reason?.startsWith('newer')).length;
    const failed = r.items.filter((i) => i.state === 'failed').length;
    const parts = [
        ...(at > 0 ? [`${at} already at the target image`] : []),
        ...(newer > 0 ? [`${newer} newer than the target`] : []),
        ...(failed > 0 ? [`${failed} on servers not ready`] : []),
    ];
    return `every item is skipped or failed before running (${parts.join(', ')})`;
}

/** counts (per item state), from the items: cheap, done at every step. */
export function recount(r: Rollout): void {
    const c: Record<ItemState, number> = { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0, skipped: 0 };
    for (const i of r.items) {
        c[i.state] += 1;
    }
    const { skipped, ...counts } = c;
    r.counts = skipped > 0 ? { ...counts, skipped } : counts;
}

/** totals, from the items: done when the rollout is shown or written. */
export function retotal(r: Rollout): void {
    const busy = new Set<string>();
    const servers = new Set<string>();
    let succeeded = 0;
    let failed = 0;
    let skipped = 0;
    for (const i of r.items) {
        servers.add(i.server_uuid);
        if (i.state === 'pending' || i.state === 'running' || i.state === 'stalled') busy.add(i.server_uuid);
        else if (i.state === 'succeeded') succeeded += 1;
        else if (i.state === 'failed') failed += 1;
        else if (i.state === 'skipped') skipped += 1;
    }
    const totals: RolloutTotals = { servers: servers.size, servers_done: servers.size - busy.size, items: r.items.length, succeeded, failed, skipped };
    r.totals = totals;
}

/** The items grouped by server, in plan order. */
export function serverView(items: RolloutItem[]): RolloutServer[] {
    const groups = new Map<string, RolloutItem[]>();
    for (const i of items) {
        let g = groups.get(i.server_uuid);
        if (!g) {
            g = [];
            groups.set(i.server_uuid, g);
        }
        g.push(i);
    }
    return [...groups.entries()].map(([server_uuid, list]) => ({ server_uuid, state: serverState(list), items: list }));
}

function serverState(items: RolloutItem[]): RolloutServer['state'] {
    const has = (s: ItemState): boolean => items.some((i) => i.state === s);
    if (has('running') || has('stalled')) return 'running';
    if (has('pending')) return 'pending';
    if (has('failed')) return 'failed';
    if (has('canceled')) return 'canceled';
    if (items.every((i) => i.state === 'skipped')) return 'skipped';
    return 'succeeded';
}

/** Failed items of the upgrade (not of a revert) that max_failures allows before pausing; undefined: no limit. */
export function failureLimit(r: Rollout): number | undefined {
    const m = r.max_failures;
    if (m === undefined) {
        return undefined;
    }
    if (typeof m === 'number') {
        return m;
    }
    const toRun = r.items.filter((i) => i.phase !== 'revert' && i.state !== 'skipped').length;
    return Math.max(1, Math.ceil((Number(m.slice(0, -1)) / 100) * toRun));
}

/** Failed upgrade items since the rollout was last resumed. */
export function failuresCounted(r: Rollout): number {
    return r.items.filter((i) => i.phase !== 'revert' && i.state === 'failed').length - (r.failures_baseline ?? 0);
}

/** A rollout without its items (what GET /rollouts lists). */
export function summaryOf(r: Rollout): RolloutSummary {
    retotal(r);
    const { items: _items, servers: _servers, ...summary } = r;
    return summary;
}

/** What the API answers: the rollout with its items also grouped by server. */
export function present(r: Rollout): Rollout {
    retotal(r);
    return { ...r, servers: serverView(r.items) };
}
