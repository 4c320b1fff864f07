// How sapiadm shows rollouts: a rollout's headline, a plan server by
// server, the watch of a running rollout with its progress, and the exit
// status a rollout's outcome gives. Used by \`sapiadm rollout\` and
// \`sapiadm server setup-agents\`.

import { setTimeout as sleep } from 'node:timers/promises';

import type { Command } from 'commander';

import { isTransientError } from '../clients/http.js';
import { FINAL_STATES, type Rollout, type RolloutItem, type RolloutPreview } from '../rollout/types.js';
import { compareVersions } from '../rollout/versions.js';
import type { Cli } from './common.js';
import { EXIT_DRIFT, EXIT_ERROR, EXIT_OK } from './errors.js';
import { isPlan, nothingUpgraded, pausedCommands, pausedWhy, ProgressView, summary } from './progress.js';
import type { SapiApi } from './sapi-api.js';
import { duration, plural } from './table.js';

/** Poll errors in a row tolerated while watching (SAPI restarting, ...). */
const MAX_POLL_ERRORS = 5;

/** The watched rollout stopped for the operator (canaries done, too many failures). */
export const EXIT_PAUSED = 4;
/** The watch was interrupted (Ctrl-C); the rollout goes on in SAPI. */
export const EXIT_INTERRUPTED = 130;

/** What a rollout (or a plan of one) upgrades, and how: the headline after "rollout UUID: ". */
type Described = Pick<
    Rollout,
    'items' | 'totals' | 'services' | 'image_uuid' | 'service_name' | 'concurrency' | 'canary' | 'auto_promote_after_ms' | 'max_failures' | 'allow_downgrade'
>;

function describe(r: Described): string {
    const extras = [isPlan(r) ? `concurrency ${plural(r.concurrency, 'server')}` : `concurrency ${r.concurrency}`];
    if (r.canary !== undefined) {
        extras.push(
            `canary ${plural(r.canary, 'server')}` +
                (r.auto_promote_after_ms !== undefined ? ` (auto-promote after ${duration(r.auto_promote_after_ms)})` : ''),
        );
    }
    if (r.max_failures !== undefined) extras.push(`max failures ${String(r.max_failures)}`);
    if (r.allow_downgrade) extras.push('downgrades allowed');
    if (!isPlan(r)) {
        return `${r.items.length} ${r.service_name} instance(s) to image ${r.image_uuid ?? '?'}, ${extras.join(', ')}`;
    }
    const agents = (r.services ?? []).map((s) => `${s.service_name} → ${s.image_uuid}`).join(', ');
    return `${plural(r.items.length, 'item')} on ${plural(r.totals.servers, 'server')} (${agents}), ${extras.join(', ')}`;
}

/** How a started rollout is announced. */
export function headline(r: Rollout): string {
    return `rollout ${r.uuid}: ${describe(r)}`;
}

/** POST /rollouts as a dry run, and the plan printed (JSON with --json). */
export async function showPlan(cli: Cli, c: Command, body: Record<string, unknown>): Promise<void> {
    const p = await cli.sapi(c).post<RolloutPreview>('/rollouts', { ...body, dry_run: true });
    if (cli.globals(c).json) {
        cli.json(p);
    } else {
        for (const line of planLines(p)) cli.out(line);
    }
    cli.exitCode = EXIT_OK;
}

/**
 * The plan for people: server by server, each agent from → to (version and
 * image) and what the plan does with it (upgrade, downgrade, install, adopt),
 * or that it is skipped or fails before running, and why; then the servers
 * the plan leaves alone and its warnings.
 */
export function planLines(p: RolloutPreview): string[] {
    const lines = [`plan (dry run, nothing started): ${describe(p)}`, p.summary];
    const groups = new Map<string, RolloutItem[]>();
    for (const s of p.servers ?? []) groups.set(s.server_uuid, s.items);
    if (groups.size === 0) {
        for (const i of p.items) groups.set(i.server_uuid, [...(groups.get(i.server_uuid) ?? []), i]);
    }
    const width = Math.max(0, ...p.items.map((i) => i.service_name.length));
    for (const [server, items] of groups) {
        const canary = items.some((i) => i.phase === 'canary') ? ' (canary)' : '';
        lines.push(`server ${server}${canary}`);
        for (const i of items) {
            lines.push(`  ${verb(i).padEnd(9)} ${i.service_name.padEnd(width)}  ${itemChange(i)}${itemWhy(i)}`);
        }
    }
    for (const s of p.skipped_servers ?? []) lines.push(`server ${s.server_uuid}: left alone: ${s.reason}`);
    // A plan is not a log: its warnings without the time they were noted.
    for (const w of p.warnings) lines.push(`warning: ${w.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z: /, '')}`);
    if (p.items.some((i) => i.state === 'pending')) {
        lines.push('To start it: the same options with `sapiadm rollout start` (without --dry-run).');
    }
    return lines;
}

/** What the plan does with an item. */
function verb(i: RolloutItem): string {
    if (i.state === 'skipped') return 'skip';
    if (i.state === 'failed') return 'fail';
    if (i.action !== undefined && i.action !== 'upgrade') return i.action;
    const cmp = compareVersions(i.from_version, i.to_version);
    return cmp !== null && cmp > 0 ? 'downgrade' : 'upgrade';
}

/** "1.0.0 → 1.1.0  (image A → B)": the versions where either is known, and the images. */
function itemChange(i: RolloutItem): string {
    const versions = i.from_version === undefined && i.to_version === undefined ? '' : `${i.from_version ?? '?'} → ${i.to_version ?? '?'}  `;
    const images =
        i.from_image === undefined
            ? `image ${i.action === 'install' ? '(none)' : '?'} → ${i.to_image}`
            : i.from_image === i.to_image
              ? `image ${i.to_image}`
              : `image ${i.from_image} → ${i.to_image}`;
    return `${versions}(${images})`;
}

/** ": reason (error)" for an item that will not run. */
function itemWhy(i: RolloutItem): string {
    if (i.state === 'skipped') return `: ${i.reason ?? 'already at the target image'}`;
    if (i.state === 'failed') return `: ${i.reason ?? 'fails before running'}${i.error ? ` (${i.error})` : ''}`;
    return '';
}

/**
 * The exit status of a rollout as it stands: paused 4; reverted 0; failed
 * or canceled 1, as is any item that failed while running. A finished
 * rollout that upgraded nothing is 3 when agents remain off their target
 * (newer than it, or on servers not ready), and 0 when every one was at it
 * already; the summary says which.
 */
export function exitFor(r: Rollout): number {
    if (r.state === 'paused') return EXIT_PAUSED;
    if (r.state === 'reverted') return EXIT_OK;
    if (r.state === 'canceled') return EXIT_ERROR;
    const nothing = nothingUpgraded(r);
    if (nothing) return nothing.unfinished ? EXIT_DRIFT : EXIT_OK;
    return r.counts.failed > 0 || r.state === 'failed' ? EXIT_ERROR : EXIT_OK;
}

/** Whether the watch goes on: the rollout runs, or it waits for its own auto-promotion. */
function stillMoving(r: Rollout): boolean {
    if (r.state === 'running' || r.state === 'reverting') return true;
    return r.state === 'paused' && r.paused_reason === 'canary' && r.auto_promote_at !== undefined && r.counts.failed === 0;
}

export async function finishWatch(cli: Cli, api: SapiApi, first: Rollout, every: number, json: boolean): Promise<void> {
    const r = await watch(cli, api, first, every, json);
    if (stillMoving(r)) {
        // Interrupted: the rollout goes on in SAPI.
        cli.out(`stopped watching; the rollout goes on: sapiadm rollout status ${r.uuid} --watch`);
        cli.exitCode = EXIT_INTERRUPTED;
        return;
    }
    if (json) {
        cli.json(r);
        // stdout is the one document; why nothing was upgraded goes beside it.
        const nothing = nothingUpgraded(r);
        if (nothing) cli.warn(nothing.line);
    } else {
        for (const line of summary(r)) cli.out(line);
    }
    cli.exitCode = exitFor(r);
}

/** Polls until the rollout ends or pauses (or Ctrl-C), drawing progress unless --json. */
async function watch(cli: Cli, api: SapiApi, first: Rollout, every: number, json: boolean): Promise<Rollout> {
    const view = json ? undefined : new ProgressView(cli, cli.isTTY);
    const stop = new AbortController();
    const onInt = (): void => stop.abort();
    process.once('SIGINT', onInt);
    let r = first;
    let errors = 0;
    try {
        for (;;) {
            view?.update(r);
            if (!stillMoving(r)) break;
            try {
                await sleep(every, undefined, { signal: stop.signal });
            } catch {
                break;
            }
            try {
                r = await api.getRollout(r.uuid);
                errors = 0;
            } catch (err) {
                if (!isTransientError(err) || ++errors > MAX_POLL_ERRORS) throw err;
            }
        }
    } finally {
        process.off('SIGINT', onInt);
        view?.finish();
    }
    if (json && r.state === 'paused') {
        cli.warn(`paused: ${pausedWhy(r)}`);
        for (const line of pausedCommands(r)) cli.warn(line);
    }
    return r;
}

/**
 * POST /rollouts with `body`, then watch it (or, with `watch` false, print
 * its id and how to watch it, unless it ended at once).
 */
export async function startAndWatch(cli: Cli, c: Command, body: Record<string, unknown>, watch: boolean, every: number): Promise<void> {
    const api = cli.sapi(c);
    const started = await api.post<Rollout>('/rollouts', body);
    const json = cli.globals(c).json;
    if (!watch && !FINAL_STATES.includes(started.state)) {
        if (json) {
            cli.json(started);
        } else {
            cli.out(`started ${headline(started)}`);
            cli.out(`watch it: sapiadm rollout status ${started.uuid} --watch`);
        }
        return;
    }
    if (!json) cli.out(headline(started));
    await finishWatch(cli, api, started, every, json);
}
