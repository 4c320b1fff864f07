// sapiadm rollout: start an agent rollout (one service to one image, or a
// plan of several agent services) and watch it; show, list, promote, resume,
// revert and cancel rollouts (POST/GET/DELETE /rollouts...).

import { setTimeout as sleep } from 'node:timers/promises';

import type { Command } from 'commander';

import { isTransientError } from '../clients/http.js';
import type { RolloutSummary } from '../rollout/types.js';
import type { Rollout } from '../rollout/types.js';
import { collect, mustUuid, positiveInt, uuidList } from './args.js';
import type { Cli } from './common.js';
import { EXIT_ERROR, EXIT_OK, UsageError } from './errors.js';
import { isPlan, pausedCommands, pausedWhy, progressLine, ProgressView, summary } from './progress.js';
import type { SapiApi } from './sapi-api.js';
import { duration, plural } from './table.js';

/** Poll errors in a row tolerated while watching (SAPI restarting, ...). */
const MAX_POLL_ERRORS = 5;

/** The watched rollout stopped for the operator (canaries done, too many failures). */
export const EXIT_PAUSED = 4;
/** The watch was interrupted (Ctrl-C); the rollout goes on in SAPI. */
export const EXIT_INTERRUPTED = 130;

const EXIT_HELP = `
Exit status (when watching; with --no-watch 0 once SAPI accepted):
  0  every item succeeded or was skipped (already on its image),
     or a revert put every upgraded agent back
  1  some item failed, the rollout failed or was canceled, or an API error
  2  usage error
  4  the rollout is paused: its canary servers are done (promote it) or it
     reached --max-failures (resume or revert it); the commands are printed
  130  interrupted (Ctrl-C): the rollout goes on in SAPI`;

interface WatchOpts {
    watch: boolean;
    interval: string;
}

interface StartOpts extends WatchOpts {
    concurrency?: string;
    servers?: string;
    stallFactor?: string;
    instanceTimeout?: string;
    allAgents?: boolean;
    service?: string[];
    exclude?: string[];
    canary?: string;
    autoPromoteAfter?: string;
    maxFailures?: string;
}

function interval(raw: string): number {
    return positiveInt(raw, '--interval');
}

/** `5` → 5, `5%` / `2.5%` → "5%" / "2.5%". */
export function maxFailures(raw: string): number | string {
    if (/^\d+$/.test(raw) && Number(raw) >= 1) return Number(raw);
    const m = /^(\d+(?:\.\d+)?)%$/.exec(raw);
    if (m && Number(m[1]) > 0 && Number(m[1]) <= 100) return raw;
    throw new UsageError(`--max-failures must be a count (at least 1) or a percentage such as 5%: ${raw}`);
}

/** Repeatable, comma-separated list options (`--exclude a,b --exclude c`). */
function listOf(values: string[] | undefined): string[] {
    return (values ?? [])
        .flatMap((v) => v.split(','))
        .map((v) => v.trim())
        .filter(Boolean);
}

/** The planned services of `--service NAME[=IMAGE]`, resolved to UUIDs. */
async function plannedServices(api: SapiApi, specs: string[]): Promise<{ service_uuid: string; image_uuid?: string }[]> {
    const out: { service_uuid: string; image_uuid?: string }[] = [];
    for (const spec of specs) {
        const eq = spec.indexOf('=');
        const name = eq < 0 ? spec : spec.slice(0, eq);
        const image = eq < 0 ? undefined : spec.slice(eq + 1);
        if (name === '') throw new UsageError(`--service: no service name in "${spec}"`);
        if (image !== undefined) mustUuid(image, `--service ${name}=IMAGE`);
        const svc = await api.resolveService(name);
        out.push(image === undefined ? { service_uuid: svc.uuid } : { service_uuid: svc.uuid, image_uuid: image });
    }
    return out;
}

/** How a started rollout is announced. */
function headline(r: Rollout): string {
    const extras = [isPlan(r) ? `concurrency ${plural(r.concurrency, 'server')}` : `concurrency ${r.concurrency}`];
    if (r.canary !== undefined) {
        extras.push(
            `canary ${plural(r.canary, 'server')}` +
                (r.auto_promote_after_ms !== undefined ? ` (auto-promote after ${duration(r.auto_promote_after_ms)})` : ''),
        );
    }
    if (r.max_failures !== undefined) extras.push(`max failures ${String(r.max_failures)}`);
    if (!isPlan(r)) {
        return `rollout ${r.uuid}: ${r.items.length} ${r.service_name} instance(s) to image ${r.image_uuid ?? '?'}, ${extras.join(', ')}`;
    }
    const agents = (r.services ?? []).map((s) => `${s.service_name} → ${s.image_uuid}`).join(', ');
    return `rollout ${r.uuid}: ${plural(r.items.length, 'item')} on ${plural(r.totals.servers, 'server')} (${agents}), ${extras.join(', ')}`;
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('start', { isDefault: true })
        .description('start a rollout and watch it (`sapiadm rollout SERVICE IMAGE`, or a plan: --all-agents / --service)')
        .argument('[SERVICE]', 'agent service name or UUID (one service to one image)')
        .argument('[IMAGE]', 'image UUID to install')
        .option('--all-agents', 'a plan of every agent service (each to its params.image_uuid), less --exclude')
        .option('--service <NAME[=IMAGE]>', 'a plan of these agent services (repeatable or comma separated; IMAGE defaults to its params.image_uuid)', collect)
        .option('--exclude <NAME[,NAME]>', 'with --all-agents or --service: leave out these services (names or UUIDs; repeatable)', collect)
        .option('--concurrency <N>', 'instances (a plan: servers) upgraded at once (server default 20)')
        .option('--servers <UUIDS>', 'only these servers (comma separated)')
        .option('--canary <N>', 'upgrade N servers first, then pause until `sapiadm rollout promote ID`')
        .option('--auto-promote-after <SECONDS>', 'with --canary: promote by itself this long after the canaries all succeeded')
        .option('--max-failures <N|N%>', 'pause when this many items failed (a count, or a percentage of the items)')
        .option('--stall-factor <N>', 'warn when an instance runs N times longer than the average (default 3)')
        .option('--instance-timeout <SECONDS>', 'fail an instance that takes longer (default 1800)')
        .option('--no-watch', 'print the rollout id and return')
        .option('--interval <MS>', 'progress poll interval', '1000')
        .addHelpText(
            'after',
            `
Examples:
  sapiadm rollout vm-agent 0f5c...                    # one service to one image
  sapiadm rollout start --all-agents --exclude marlin-agent --canary 5 --max-failures 2%
  sapiadm rollout start --service cn-agent --service vm-agent=0f5c... --servers S1,S2
${EXIT_HELP}`,
        )
        .action(async (service: string | undefined, image: string | undefined, o: StartOpts, c: Command) => {
            const specs = listOf(o.service);
            const excludes = listOf(o.exclude);
            const plan = o.allAgents === true || specs.length > 0;
            if (plan && service !== undefined) {
                throw new UsageError('give either SERVICE IMAGE or --all-agents / --service, not both');
            }
            if (o.allAgents && specs.length > 0) {
                throw new UsageError('give either --all-agents or --service, not both');
            }
            if (!plan && (service === undefined || image === undefined)) {
                throw new UsageError('give SERVICE IMAGE, or a plan with --all-agents or --service NAME[=IMAGE]');
            }
            if (!plan && excludes.length > 0) {
                throw new UsageError('--exclude goes with --all-agents or --service');
            }
            const body: Record<string, unknown> = {};
            if (o.concurrency !== undefined) body.concurrency = positiveInt(o.concurrency, '--concurrency');
            if (o.servers !== undefined) body.servers = uuidList(o.servers, '--servers');
            if (o.stallFactor !== undefined) {
                const f = Number(o.stallFactor);
                if (!Number.isFinite(f) || f <= 0) throw new UsageError(`--stall-factor must be a positive number: ${o.stallFactor}`);
                body.stall_factor = f;
            }
            if (o.instanceTimeout !== undefined) body.instance_timeout_ms = positiveInt(o.instanceTimeout, '--instance-timeout') * 1000;
            if (o.canary !== undefined) body.canary = positiveInt(o.canary, '--canary');
            if (o.autoPromoteAfter !== undefined) {
                if (o.canary === undefined) throw new UsageError('--auto-promote-after goes with --canary');
                if (!/^\d+$/.test(o.autoPromoteAfter)) throw new UsageError(`--auto-promote-after must be a number of seconds: ${o.autoPromoteAfter}`);
                body.auto_promote_after_ms = Number(o.autoPromoteAfter) * 1000;
            }
            if (o.maxFailures !== undefined) body.max_failures = maxFailures(o.maxFailures);
            if (!plan) body.image_uuid = mustUuid(image as string, 'IMAGE');
            const every = interval(o.interval);
            const api = cli.sapi(c);
            if (plan) {
                if (o.allAgents) body.all_agents = true;
                else body.services = await plannedServices(api, specs);
                if (excludes.length > 0) body.exclude_services = excludes;
            } else {
                body.service_uuid = (await api.resolveService(service as string)).uuid;
            }
            const started = await api.post<Rollout>('/rollouts', body);
            const json = cli.globals(c).json;
            if (!o.watch) {
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
        });

    cmd.command('status')
        .description('show a rollout (with --watch: follow it until it ends or pauses)')
        .argument('<ID>', 'rollout UUID')
        .option('--watch', 'follow progress until the rollout ends or pauses')
        .option('--interval <MS>', 'progress poll interval', '1000')
        .addHelpText('after', EXIT_HELP.replace(' (when watching; with --no-watch 0 once SAPI accepted)', ''))
        .action(async (id: string, o: { watch?: boolean; interval: string }, c: Command) => {
            const every = interval(o.interval);
            const api = cli.sapi(c);
            const r = await api.getRollout(mustUuid(id, 'ID'));
            const json = cli.globals(c).json;
            if (o.watch) {
                await finishWatch(cli, api, r, every, json);
                return;
            }
            if (json) {
                cli.json(r);
            } else {
                cli.out(progressLine(r));
                for (const w of r.warnings) cli.out(`warning: ${w}`);
                for (const line of summary(r)) cli.out(line);
            }
            cli.exitCode = exitFor(r);
        });

    cmd.command('list')
        .description('list rollouts')
        .option('--service <SERVICE>', 'only rollouts of this service (name or UUID)')
        .action(async (o: { service?: string }, c: Command) => {
            const api = cli.sapi(c);
            const query = o.service === undefined ? {} : { service_uuid: (await api.resolveService(o.service)).uuid };
            const list = (await api.http.get<RolloutSummary[]>('/rollouts', { query })).body;
            list.sort((a, b) => a.created_at.localeCompare(b.created_at));
            cli.list(c, list, [
                { header: 'uuid', get: (r) => r.uuid },
                { header: 'service', get: (r) => r.service_name },
                { header: 'image', get: (r) => r.image_uuid ?? (isPlan(r) ? 'plan' : undefined) },
                { header: 'state', get: (r) => (r.state === 'paused' ? `paused (${r.paused_reason ?? '?'})` : r.state) },
                {
                    header: 'done',
                    get: (r) => `${r.counts.succeeded + r.counts.failed + r.counts.canceled + (r.counts.skipped ?? 0)}/${r.totals.items}`,
                },
                { header: 'failed', get: (r) => r.counts.failed },
                { header: 'avg', get: (r) => duration(r.average_ms) },
                { header: 'created', get: (r) => r.created_at },
            ]);
        });

    const action = (name: 'promote' | 'resume' | 'revert', description: string): void => {
        cmd.command(name)
            .description(description)
            .argument('<ID>', 'rollout UUID')
            .option('--no-watch', 'print the new state and return')
            .option('--interval <MS>', 'progress poll interval', '1000')
            .addHelpText('after', `\nA rollout in another state answers 409 (exit 1).\n${EXIT_HELP}`)
            .action(async (id: string, o: WatchOpts, c: Command) => {
                const every = interval(o.interval);
                const api = cli.sapi(c);
                const r = await api.post<Rollout>(`/rollouts/${mustUuid(id, 'ID')}/${name}`, {});
                const json = cli.globals(c).json;
                if (!o.watch) {
                    if (json) cli.json(r);
                    else cli.out(`rollout ${r.uuid}: ${r.state}`);
                    return;
                }
                if (!json) cli.out(`rollout ${r.uuid}: ${r.state}`);
                await finishWatch(cli, api, r, every, json);
            });
    };
    action('promote', 'after the canary servers: upgrade the other servers (and watch)');
    action('resume', 'go on with a rollout paused by --max-failures (and watch)');
    action('revert', "put every agent the rollout upgraded back on its previous image (and watch): per server, as the rollout's own rules");

    cmd.command('cancel')
        .description('cancel a rollout: pending instances are not started, running ones finish')
        .argument('<ID>', 'rollout UUID')
        .action(async (id: string, _o: unknown, c: Command) => {
            const r = await cli.sapi(c).del<Rollout>(`/rollouts/${mustUuid(id, 'ID')}`);
            if (cli.globals(c).json) cli.json(r);
            else cli.out(`rollout ${r.uuid}: ${r.state}; ${r.counts.canceled} instance(s) will not be started`);
        });
}

export function exitFor(r: Rollout): number {
    if (r.state === 'paused') return EXIT_PAUSED;
    if (r.state === 'reverted') return EXIT_OK;
    return r.counts.failed > 0 || r.state === 'failed' || r.state === 'canceled' ? EXIT_ERROR : EXIT_OK;
}

/** Whether the watch goes on: the rollout runs, or it waits for its own auto-promotion. */
function stillMoving(r: Rollout): boolean {
    if (r.state === 'running' || r.state === 'reverting') return true;
    return r.state === 'paused' && r.paused_reason === 'canary' && r.auto_promote_at !== undefined && r.counts.failed === 0;
}

async function finishWatch(cli: Cli, api: SapiApi, first: Rollout, every: number, json: boolean): Promise<void> {
    const r = await watch(cli, api, first, every, json);
    if (stillMoving(r)) {
        // Interrupted: the rollout goes on in SAPI.
        cli.out(`stopped watching; the rollout goes on: sapiadm rollout status ${r.uuid} --watch`);
        cli.exitCode = EXIT_INTERRUPTED;
        return;
    }
    if (json) {
        cli.json(r);
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
