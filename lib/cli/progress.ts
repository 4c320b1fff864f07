// Live rollout progress: a bar redrawn in place on a terminal, plain lines
// (on change, and every HEARTBEAT_MS) otherwise; stall warnings, failed
// items and changes of state (paused, promoted, reverting) are printed as
// they appear; a summary at the end, with per-agent counts for a plan,
// every failure (server, agent, error), and why nothing was upgraded when
// nothing was.

import type { Rollout, RolloutItem } from '../rollout/types.js';
import type { Cli } from './common.js';
import { duration, plural } from './table.js';

const BAR = 24;
const HEARTBEAT_MS = 10_000;

/** A plan (several agent services, or every agent) rather than one service to one image. */
export function isPlan(r: Pick<Rollout, 'services' | 'image_uuid'>): boolean {
    return Array.isArray(r.services) && r.image_uuid === undefined;
}

function skippedOf(r: Rollout): number {
    return r.counts.skipped ?? r.totals?.skipped ?? 0;
}

/** Items that ran or will not run anymore. */
function doneOf(r: Rollout): number {
    const c = r.counts;
    return c.succeeded + c.failed + c.canceled + skippedOf(r);
}

/** `paused (canary)`, `reverting`, ... for the progress line: the states that are not plain work. */
function stateTag(r: Rollout): string {
    if (r.state === 'paused') return `  PAUSED (${r.paused_reason ?? '?'})`;
    if (r.state === 'reverting') return '  REVERTING';
    return '';
}

export function progressLine(r: Rollout, now = Date.now()): string {
    const c = r.counts;
    const total = r.items.length;
    const done = doneOf(r);
    const skipped = skippedOf(r);
    const filled = total === 0 ? BAR : Math.round((done / total) * BAR);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]`;
    const end = r.finished_at ? Date.parse(r.finished_at) : now;
    const servers = isPlan(r) && r.totals ? `  servers ${r.totals.servers_done}/${r.totals.servers}` : '';
    return (
        `${bar} ${done}/${total}${servers}  pending ${c.pending}  running ${c.running}  succeeded ${c.succeeded}` +
        `  failed ${c.failed}  stalled ${c.stalled}` +
        (skipped > 0 ? `  skipped ${skipped}` : '') +
        (c.canceled > 0 ? `  canceled ${c.canceled}` : '') +
        `  avg ${duration(r.average_ms)}  elapsed ${duration(end - Date.parse(r.created_at))}` +
        stateTag(r)
    );
}

/** A change of state worth its own line (undefined when there is none). */
function stateEvent(prev: Rollout | undefined, r: Rollout): string | undefined {
    if (!prev || (prev.state === r.state && prev.paused_reason === r.paused_reason)) return undefined;
    if (r.state === 'paused') return `paused: ${pausedWhy(r)}`;
    if (r.state === 'reverting') return 'reverting: upgraded agents go back to their previous images';
    if (r.state === 'running' && prev.state === 'paused') return prev.paused_reason === 'canary' ? 'promoted: the other servers go on' : 'resumed';
    return undefined;
}

export class ProgressView {
    private warningsSeen = 0;
    private readonly failedSeen = new Set<string>();
    private lastLine = '';
    private lastPrinted = 0;
    private drawn = false;
    private prev: Rollout | undefined;

    constructor(
        private readonly cli: Cli,
        private readonly tty: boolean,
    ) {}

    update(r: Rollout): void {
        const events: string[] = [];
        for (const w of r.warnings.slice(this.warningsSeen)) {
            events.push(`warning: ${w}`);
        }
        this.warningsSeen = r.warnings.length;
        for (const item of r.items) {
            const key = `${item.instance_uuid}/${item.phase ?? ''}`;
            if (item.state === 'failed' && !this.failedSeen.has(key)) {
                this.failedSeen.add(key);
                events.push(`failed: ${failure(item, isPlan(r))}`);
            }
        }
        const changed = stateEvent(this.prev, r);
        if (changed) events.push(changed);
        this.prev = r;
        const line = progressLine(r);
        if (this.tty) {
            this.clear();
            for (const e of events) this.cli.out(e);
            this.cli.io.stdout.write(line);
            this.drawn = true;
            return;
        }
        for (const e of events) this.cli.out(e);
        // Plain output: a line when something changed, else a heartbeat.
        const key = line.replace(/ {2}elapsed .*$/, '');
        if (key !== this.lastLine || Date.now() - this.lastPrinted >= HEARTBEAT_MS) {
            this.cli.out(line);
            this.lastLine = key;
            this.lastPrinted = Date.now();
        }
    }

    /** Ends the redrawn line (before other output). */
    clear(): void {
        if (this.tty && this.drawn) {
            this.cli.io.stdout.write('\r\x1b[K');
            this.drawn = false;
        }
    }

    /** Leaves the last bar on screen and moves to a new line. */
    finish(): void {
        if (this.tty && this.drawn) {
            this.cli.io.stdout.write('\n');
            this.drawn = false;
        }
    }
}

/**
 * A single-service rollout: "instance X on server Y: <error>" (the error
 * alone when it names the instance). A plan: "server Y, <agent> (instance
 * X): <error>", with "revert of" for a revert item.
 */
function failure(item: RolloutItem, plan: boolean): string {
    const error = item.error ?? 'unknown error';
    if (!plan) {
        const what = item.phase === 'revert' ? `revert of instance ${item.instance_uuid}` : `instance ${item.instance_uuid}`;
        return error.includes(item.instance_uuid) && item.phase !== 'revert' ? error : `${what} on server ${item.server_uuid}: ${error}`;
    }
    const agent = `${item.phase === 'revert' ? 'revert of ' : ''}${item.service_name ?? 'agent'}`;
    return `server ${item.server_uuid}, ${agent} (instance ${item.instance_uuid}): ${error}`;
}

/** Why the rollout is paused, and the commands that go on from there. */
export function pausedWhy(r: Rollout): string {
    if (r.paused_reason === 'canary') {
        const auto = r.auto_promote_at ? `; it promotes itself at ${r.auto_promote_at} if every canary succeeded` : '';
        const n = r.canary ?? 0;
        return `the ${plural(n, 'canary server')} ${n === 1 ? 'is' : 'are'} done${auto}`;
    }
    if (r.paused_reason === 'failures') {
        return `${plural(r.counts.failed, 'failed item')} reached max failures ${String(r.max_failures ?? '?')}`;
    }
    return 'waiting';
}

/** What the operator can run on a paused rollout. */
export function pausedCommands(r: Rollout): string[] {
    const lines: string[] = [];
    if (r.paused_reason === 'canary') {
        lines.push(`promote (upgrade the other servers): sapiadm rollout promote ${r.uuid}`);
    } else {
        lines.push(`resume (go on with the other servers): sapiadm rollout resume ${r.uuid}`);
    }
    lines.push(`revert (back to the previous images):   sapiadm rollout revert ${r.uuid}`);
    lines.push(`cancel (leave the rest as it is):      sapiadm rollout cancel ${r.uuid}`);
    return lines;
}

/** Per planned agent: its image and its items by state. */
function perAgent(r: Rollout): string[] {
    const rows = new Map<string, { image: string; n: Record<string, number> }>();
    for (const s of r.services ?? []) {
        rows.set(s.service_name, { image: s.image_uuid, n: {} });
    }
    for (const i of r.items) {
        if (i.phase === 'revert') continue;
        const name = i.service_name ?? '?';
        const row = rows.get(name) ?? { image: i.to_image, n: {} };
        row.n[i.state] = (row.n[i.state] ?? 0) + 1;
        rows.set(name, row);
    }
    const width = Math.max(0, ...[...rows.keys()].map((k) => k.length));
    return [...rows.entries()].map(([name, { image, n }]) => {
        const parts = ['succeeded', 'failed', 'skipped', 'pending', 'running', 'stalled', 'canceled']
            .filter((s) => (n[s] ?? 0) > 0 || s === 'succeeded' || s === 'failed')
            .map((s) => `${n[s] ?? 0} ${s}`);
        return `    ${name.padEnd(width)}  to ${image}: ${parts.join(', ')}`;
    });
}

/** A skipped item whose agent is newer than its target (the planner's reason says so). */
function isNewer(i: RolloutItem): boolean {
    return i.state === 'skipped' && typeof i.reason === 'string' && i.reason.startsWith('newer');
}

/** An item that failed before it ran (its server was not ready when the rollout was planned). */
function failedBeforeRunning(i: RolloutItem): boolean {
    return i.state === 'failed' && i.attempts === 0 && i.started_at === undefined;
}

/** What the upgrade (not a revert) of a rollout came to, item by item. */
export interface Outcome {
    /** Items upgraded. */
    upgraded: number;
    /** Skipped: already at the target image. */
    atTarget: number;
    /** Skipped: newer than the target (allow_downgrade not given). */
    newer: number;
    /** Failed before running (server not ready). */
    notRun: number;
    /** Failed while running. */
    failed: number;
}

export function outcomeOf(r: Pick<Rollout, 'items'>): Outcome {
    const o: Outcome = { upgraded: 0, atTarget: 0, newer: 0, notRun: 0, failed: 0 };
    for (const i of r.items) {
        if (i.phase === 'revert') continue;
        if (i.state === 'succeeded') o.upgraded += 1;
        else if (isNewer(i)) o.newer += 1;
        else if (i.state === 'skipped') o.atTarget += 1;
        else if (failedBeforeRunning(i)) o.notRun += 1;
        else if (i.state === 'failed') o.failed += 1;
    }
    return o;
}

/**
 * For a finished rollout that upgraded nothing: why, in one line, and
 * whether that leaves work undone (agents newer than their target, servers
 * not ready) or nothing needed doing (every agent at its target already).
 * undefined when something was upgraded or an item failed while running.
 */
export function nothingUpgraded(r: Rollout): { unfinished: boolean; line: string } | undefined {
    if (r.state !== 'succeeded' && r.state !== 'failed') return undefined;
    const o = outcomeOf(r);
    if (o.upgraded > 0 || o.failed > 0) return undefined;
    if (o.newer === 0 && o.notRun === 0) {
        return { unfinished: false, line: 'nothing needed upgrading: every agent is already at its target image' };
    }
    const why = [
        ...(o.newer > 0 ? [`${plural(o.newer, 'agent')} newer than the target (--allow-downgrade goes back)`] : []),
        ...(o.notRun > 0 ? [`${plural(o.notRun, 'item')} on servers not ready`] : []),
        ...(o.atTarget > 0 ? [`${o.atTarget} already at the target`] : []),
    ];
    return { unfinished: true, line: `nothing was upgraded: ${why.join(', ')}` };
}

/** ", N skipped (why)" for the summary; '' when nothing was skipped. */
function skippedText(r: Rollout): string {
    const skipped = skippedOf(r);
    if (skipped === 0) return '';
    const newer = r.items.filter(isNewer).length;
    if (newer === 0) return `, ${skipped} skipped (already on the image)`;
    if (newer === skipped) return `, ${skipped} skipped (newer than the target)`;
    return `, ${skipped} skipped (${skipped - newer} already on the image, ${newer} newer than the target)`;
}

/** The end-of-rollout (or paused) report. */
export function summary(r: Rollout): string[] {
    const c = r.counts;
    const plan = isPlan(r);
    const took = r.finished_at ? `took ${duration(Date.parse(r.finished_at) - Date.parse(r.created_at))}` : 'still running';
    const unfinished = c.pending + c.running + c.stalled;
    const what = plan ? `plan of ${plural((r.services ?? []).length, 'agent service')}` : `${r.service_name} to image ${r.image_uuid ?? '?'}`;
    const lines = [
        `Rollout ${r.uuid} ${r.state}${r.state === 'paused' ? ` (${r.paused_reason ?? '?'})` : ''}: ${what}`,
        `  ${plan && r.totals ? `${plural(r.totals.servers, 'server')} (${r.totals.servers_done} done), ` : ''}` +
            `${plural(r.items.length, plan ? 'item' : 'instance')}: ${c.succeeded} succeeded, ${c.failed} failed` +
            skippedText(r) +
            (c.canceled > 0 ? `, ${c.canceled} canceled` : '') +
            (unfinished > 0 ? `, ${unfinished} not finished` : '') +
            `; average ${duration(r.average_ms)}; ${took}`,
    ];
    const nothing = nothingUpgraded(r);
    if (nothing) {
        lines.push(`  ${nothing.line}`);
    }
    if (plan) {
        lines.push('  per agent:', ...perAgent(r));
    }
    const reverts = r.items.filter((i) => i.phase === 'revert');
    if (reverts.length > 0) {
        const ok = reverts.filter((i) => i.state === 'succeeded').length;
        lines.push(`  revert: ${ok} of ${plural(reverts.length, 'agent')} back on the previous image`);
    }
    const failed = r.items.filter((i) => i.state === 'failed');
    if (failed.length > 0) {
        lines.push('  failed:');
        for (const i of failed) {
            lines.push(`    ${failure(i, plan)}`);
        }
    }
    if (r.warnings.length > 0) {
        lines.push(`  ${plural(r.warnings.length, 'warning')} (see above or \`sapiadm rollout status ${r.uuid}\`)`);
    }
    if (r.state === 'paused') {
        lines.push(`  paused: ${pausedWhy(r)}`);
        for (const cmd of pausedCommands(r)) lines.push(`  ${cmd}`);
    }
    return lines;
}
