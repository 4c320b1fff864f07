// sapiadm rollout: plan an agent rollout (one service to one image, or a
// plan of several agent services) and show what it would do, or start it and
// watch it; show, list, promote, resume, revert and cancel rollouts
// (POST/GET/DELETE /rollouts...). A rollout that upgraded nothing never
// passes for a success: it exits 3 when agents remain off their target, and
// says so when none needed upgrading. How rollouts are shown: rollout-view.ts.

import { Option, type Command } from 'commander';

import { FINAL_STATES, type Rollout, type RolloutState, type RolloutSummary } from '../rollout/types.js';
import { collect, mustUuid, positiveInt, uuidList } from './args.js';
import { confirm, type Cli } from './common.js';
import { EXIT_REFUSED, UsageError } from './errors.js';
import { isPlan, outcomeOf, progressLine, summary } from './progress.js';
import { exitFor, finishWatch, showPlan, startAndWatch } from './rollout-view.js';
import type { SapiApi } from './sapi-api.js';
import { duration, plural } from './table.js';

export { EXIT_INTERRUPTED, EXIT_PAUSED, exitFor, planLines } from './rollout-view.js';

const EXIT_HELP = `
Exit status (when watching; with --no-watch 0 once SAPI accepted, unless the
rollout ended at once, having nothing to run):
  0  every item upgraded or skipped as already at its target image (when
     none needed upgrading the summary says so), or a revert put every
     upgraded agent back
  1  an item failed while running, the rollout failed or was canceled, an
     API error, or nothing to roll out (SAPI 409: no instance matched)
  2  usage error, or a confirmation refused (revert, cancel: no --yes while
     stdin is not a terminal, or not answered y)
  3  nothing was upgraded while agents remain off their target: newer than
     it (skipped; --allow-downgrade goes back), or on servers not ready
  4  the rollout is paused: its canary servers are done (promote it) or it
     reached --max-failures (resume or revert it); the commands are printed
  130  interrupted (Ctrl-C): the rollout goes on in SAPI`;

const PLAN_EXIT_HELP = `
Exit status: 0 the plan is printed (whatever it would do), 1 an API error,
or nothing to roll out (SAPI 409: no instance matched), 2 usage error.`;

/** Every state of a rollout: what GET /rollouts?state= takes. */
const STATES: readonly RolloutState[] = ['running', 'paused', 'reverting', ...FINAL_STATES];

/** Rollouts per GET /rollouts page (the most the server gives). */
const LIST_PAGE = 1000;

interface WatchOpts {
    watch: boolean;
    interval: string;
}

/** The options that shape a rollout (start and plan). */
interface PlanOpts {
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
    allowDowngrade?: boolean;
}

interface StartOpts extends WatchOpts, PlanOpts {
    dryRun?: boolean;
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

/** The options of start and plan: the rollout's shape. */
function planOptions(cmd: Command): Command {
    return cmd
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
        .option('--allow-downgrade', 'also install the target on agents found newer than it (they are skipped otherwise)')
        .option('--stall-factor <N>', 'warn when an instance runs N times longer than the average (default 3)')
        .option('--instance-timeout <SECONDS>', 'fail an instance that takes longer (default 1800)');
}

/** The CreateRollout body the options give (usage errors for what does not go together). */
async function rolloutBody(api: () => SapiApi, service: string | undefined, image: string | undefined, o: PlanOpts): Promise<Record<string, unknown>> {
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
    if (o.allowDowngrade) body.allow_downgrade = true;
    if (!plan) body.image_uuid = mustUuid(image as string, 'IMAGE');
    if (plan) {
        if (o.allAgents) body.all_agents = true;
        else body.services = await plannedServices(api(), specs);
        if (excludes.length > 0) body.exclude_services = excludes;
    } else {
        body.service_uuid = (await api().resolveService(service as string)).uuid;
    }
    return body;
}

export function define(cli: Cli, cmd: Command): void {
    planOptions(cmd.command('start', { isDefault: true }))
        .description('start a rollout and watch it (`sapiadm rollout SERVICE IMAGE`, or a plan: --all-agents / --service)')
        .option('--dry-run', 'print what the rollout would do, server by server, and start nothing (as `rollout plan`)')
        .option('--no-watch', 'print the rollout id and return')
        .option('--interval <MS>', 'progress poll interval', '1000')
        .addHelpText(
            'after',
            `
An agent found newer than its target is skipped (never downgraded) unless
--allow-downgrade. A plan that matches no instance is refused (exit 1); one
where every item is skipped or fails before running ends at once, and the
summary says why.

Examples:
  sapiadm rollout vm-agent 0f5c...                    # one service to one image
  sapiadm rollout plan vm-agent 0f5c...               # what it would do, per server
  sapiadm rollout start --all-agents --exclude marlin-agent --canary 5 --max-failures 2%
  sapiadm rollout start --service cn-agent --service vm-agent=0f5c... --servers S1,S2
${EXIT_HELP}`,
        )
        .action(async (service: string | undefined, image: string | undefined, o: StartOpts, c: Command) => {
            const every = interval(o.interval);
            const body = await rolloutBody(() => cli.sapi(c), service, image, o);
            if (o.dryRun) {
                await showPlan(cli, c, body);
                return;
            }
            await startAndWatch(cli, c, body, o.watch, every);
        });

    planOptions(cmd.command('plan'))
        .description('show what a rollout would do, server by server, and start nothing (the options of `rollout start`)')
        // Accepted so that a start command line turns into a plan by its verb alone.
        .addOption(new Option('--dry-run').hideHelp())
        .addOption(new Option('--no-watch').hideHelp())
        .addOption(new Option('--interval <MS>').hideHelp())
        .addHelpText(
            'after',
            `
For each server: each agent with its version and image now and after
(from → to), and whether it is upgraded, skipped (already at the target, or
newer than it without --allow-downgrade) or fails before running (server not
ready), and why. --json prints SAPI's plan (POST /rollouts with dry_run).

Examples:
  sapiadm rollout plan vm-agent 0f5c...
  sapiadm rollout plan --all-agents --exclude marlin-agent --servers S1,S2
${PLAN_EXIT_HELP}`,
        )
        .action(async (service: string | undefined, image: string | undefined, o: PlanOpts, c: Command) => {
            await showPlan(cli, c, await rolloutBody(() => cli.sapi(c), service, image, o));
        });

    cmd.command('status')
        .description('show a rollout (with --watch: follow it until it ends or pauses)')
        .argument('<ID>', 'rollout UUID')
        .option('--watch', 'follow progress until the rollout ends or pauses')
        .option('--interval <MS>', 'progress poll interval', '1000')
        .addHelpText('after', EXIT_HELP.replace(/ \(when watching;[^)]*\)/, ''))
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
        .description('list rollouts, newest first (all of them, page by page, unless --limit)')
        .option('--service <SERVICE>', 'only rollouts of this service (name or UUID)')
        .option('--state <STATE>', `only rollouts in this state (${STATES.join(', ')})`)
        .option('--limit <N>', 'only the N newest')
        .addOption(new Option('--page-size <N>', 'rollouts per request').default(String(LIST_PAGE)).hideHelp())
        .action(async (o: { service?: string; state?: string; limit?: string; pageSize: string }, c: Command) => {
            if (o.state !== undefined && !(STATES as readonly string[]).includes(o.state)) {
                throw new UsageError(`--state must be one of ${STATES.join(', ')}: ${o.state}`);
            }
            const want = o.limit === undefined ? Infinity : positiveInt(o.limit, '--limit');
            const page = Math.min(LIST_PAGE, positiveInt(o.pageSize, '--page-size'));
            const api = cli.sapi(c);
            const filter: Record<string, string> = {};
            if (o.service !== undefined) filter.service_uuid = (await api.resolveService(o.service)).uuid;
            if (o.state !== undefined) filter.state = o.state;
            const list: RolloutSummary[] = [];
            let marker: string | undefined;
            while (list.length < want) {
                const limit = Math.min(page, want - list.length);
                const got = (await api.http.get<RolloutSummary[]>('/rollouts', { query: { ...filter, limit, marker } })).body;
                const rows = Array.isArray(got) ? got : [];
                list.push(...rows);
                const last = rows[rows.length - 1];
                if (rows.length < limit || !last) break;
                marker = last.uuid;
            }
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
                { header: 'skipped', get: (r) => r.counts.skipped ?? 0 },
                { header: 'avg', get: (r) => duration(r.average_ms) },
                { header: 'created', get: (r) => r.created_at },
            ]);
        });

    const action = (name: 'promote' | 'resume' | 'revert', description: string): void => {
        const sub = cmd
            .command(name)
            .description(description)
            .argument('<ID>', 'rollout UUID')
            .option('--no-watch', 'print the new state and return')
            .option('--interval <MS>', 'progress poll interval', '1000');
        if (name === 'revert') {
            sub.option('--yes', 'do not ask (needed when stdin is not a terminal)');
        }
        sub.addHelpText(
            'after',
            `${name === 'revert' ? '\nAsks first (y/N) on a terminal; elsewhere it needs --yes.' : ''}\nA rollout in another state answers 409 (exit 1).\n${EXIT_HELP}`,
        ).action(async (id: string, o: WatchOpts & { yes?: boolean }, c: Command) => {
            const every = interval(o.interval);
            const uuid = mustUuid(id, 'ID');
            const api = cli.sapi(c);
            if (name === 'revert') {
                const ok = await confirm(cli, {
                    yes: o.yes,
                    action: `revert rollout ${uuid}`,
                    question: async () => {
                        const r = await api.getRollout(uuid);
                        const n = outcomeOf(r).upgraded;
                        return `Revert rollout ${uuid} (${r.state}): put the ${plural(n, 'agent')} it upgraded back on the previous image?`;
                    },
                });
                if (!ok) return refused(cli, `rollout ${uuid} not reverted`);
            }
            const r = await api.post<Rollout>(`/rollouts/${uuid}/${name}`, {});
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
        .option('--yes', 'do not ask (needed when stdin is not a terminal)')
        .addHelpText('after', '\nAsks first (y/N) on a terminal; elsewhere it needs --yes (exit 2 without).')
        .action(async (id: string, o: { yes?: boolean }, c: Command) => {
            const uuid = mustUuid(id, 'ID');
            const api = cli.sapi(c);
            const ok = await confirm(cli, {
                yes: o.yes,
                action: `cancel rollout ${uuid}`,
                question: async () => {
                    const r = await api.getRollout(uuid);
                    return `Cancel rollout ${uuid} (${r.state}): its ${plural(r.counts.pending, 'pending item')} will not be started?`;
                },
            });
            if (!ok) return refused(cli, `rollout ${uuid} not canceled`);
            const r = await api.del<Rollout>(`/rollouts/${uuid}`);
            if (cli.globals(c).json) cli.json(r);
            else cli.out(`rollout ${r.uuid}: ${r.state}; ${r.counts.canceled} instance(s) will not be started`);
        });
}

/** A question not answered y: nothing done, exit 2. */
function refused(cli: Cli, what: string): void {
    cli.warn(`Nothing changed: ${what}.`);
    cli.exitCode = EXIT_REFUSED;
}
