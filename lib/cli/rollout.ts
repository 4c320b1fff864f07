// sapiadm rollout: start an agent rollout and watch it (POST/GET /rollouts),
// show one, list them, cancel one.

import { setTimeout as sleep } from 'node:timers/promises';

import type { Command } from 'commander';

import { isTransientError } from '../clients/http.js';
import type { Rollout } from '../rollout/types.js';
import { mustUuid, positiveInt, uuidList } from './args.js';
import type { Cli } from './common.js';
import { EXIT_ERROR, EXIT_OK, UsageError } from './errors.js';
import { progressLine, ProgressView, summary } from './progress.js';
import type { SapiApi } from './sapi-api.js';
import { duration } from './table.js';

/** Poll errors in a row tolerated while watching (SAPI restarting, ...). */
const MAX_POLL_ERRORS = 5;

interface StartOpts {
    concurrency?: string;
    servers?: string;
    stallFactor?: string;
    instanceTimeout?: string;
    watch: boolean;
    interval: string;
}

function interval(raw: string): number {
    return positiveInt(raw, '--interval');
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('start', { isDefault: true })
        .description('start a rollout and watch it (`sapiadm rollout SERVICE IMAGE`)')
        .argument('<SERVICE>', 'agent service name or UUID')
        .argument('<IMAGE>', 'image UUID to install')
        .option('--concurrency <N>', 'instances upgraded at once (server default 20)')
        .option('--servers <UUIDS>', 'only instances on these servers (comma separated)')
        .option('--stall-factor <N>', 'warn when an instance runs N times longer than the average (default 3)')
        .option('--instance-timeout <SECONDS>', 'fail an instance that takes longer (default 1800)')
        .option('--no-watch', 'print the rollout id and return')
        .option('--interval <MS>', 'progress poll interval', '1000')
        .addHelpText('after', '\nExit status: 0 every instance succeeded, 1 some failed (or an API error), 2 usage error.')
        .action(async (service: string, image: string, o: StartOpts, c: Command) => {
            const body: Record<string, unknown> = { image_uuid: mustUuid(image, 'IMAGE') };
            if (o.concurrency !== undefined) body.concurrency = positiveInt(o.concurrency, '--concurrency');
            if (o.servers !== undefined) body.servers = uuidList(o.servers, '--servers');
            if (o.stallFactor !== undefined) {
                const f = Number(o.stallFactor);
                if (!Number.isFinite(f) || f <= 0) throw new UsageError(`--stall-factor must be a positive number: ${o.stallFactor}`);
                body.stall_factor = f;
            }
            if (o.instanceTimeout !== undefined) body.instance_timeout_ms = positiveInt(o.instanceTimeout, '--instance-timeout') * 1000;
            const every = interval(o.interval);
            const api = cli.sapi(c);
            const svc = await api.resolveService(service);
            body.service_uuid = svc.uuid;
            const started = await api.post<Rollout>('/rollouts', body);
            const json = cli.globals(c).json;
            if (!o.watch) {
                if (json) {
                    cli.json(started);
                } else {
                    cli.out(
                        `started rollout ${started.uuid}: ${started.items.length} ${svc.name} instance(s) to image ${started.image_uuid} (concurrency ${started.concurrency})`,
                    );
                    cli.out(`watch it: sapiadm rollout status ${started.uuid} --watch`);
                }
                return;
            }
            if (!json) {
                cli.out(
                    `rollout ${started.uuid}: ${started.items.length} ${svc.name} instance(s) to image ${started.image_uuid}, concurrency ${started.concurrency}`,
                );
            }
            await finishWatch(cli, api, started, every, json);
        });

    cmd.command('status')
        .description('show a rollout (with --watch: follow it to the end)')
        .argument('<ID>', 'rollout UUID')
        .option('--watch', 'follow progress until the rollout ends')
        .option('--interval <MS>', 'progress poll interval', '1000')
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
            const list = (await api.http.get<Rollout[]>('/rollouts', { query })).body;
            list.sort((a, b) => a.created_at.localeCompare(b.created_at));
            cli.list(c, list, [
                { header: 'uuid', get: (r) => r.uuid },
                { header: 'service', get: (r) => r.service_name },
                { header: 'image', get: (r) => r.image_uuid },
                { header: 'state', get: (r) => r.state },
                { header: 'done', get: (r) => `${r.counts.succeeded + r.counts.failed + r.counts.canceled}/${r.items.length}` },
                { header: 'failed', get: (r) => r.counts.failed },
                { header: 'avg', get: (r) => duration(r.average_ms) },
                { header: 'created', get: (r) => r.created_at },
            ]);
        });

    cmd.command('cancel')
        .description('cancel a rollout: pending instances are not started, running ones finish')
        .argument('<ID>', 'rollout UUID')
        .action(async (id: string, _o: unknown, c: Command) => {
            const r = await cli.sapi(c).del<Rollout>(`/rollouts/${mustUuid(id, 'ID')}`);
            if (cli.globals(c).json) cli.json(r);
            else cli.out(`rollout ${r.uuid}: ${r.state}; ${r.counts.canceled} instance(s) will not be started`);
        });
}

function exitFor(r: Rollout): number {
    return r.counts.failed > 0 || r.state === 'failed' || r.state === 'canceled' ? EXIT_ERROR : EXIT_OK;
}

async function finishWatch(cli: Cli, api: SapiApi, first: Rollout, every: number, json: boolean): Promise<void> {
    const r = await watch(cli, api, first, every, json);
    if (r.state === 'running') {
        // Interrupted: the rollout goes on in SAPI.
        cli.out(`stopped watching; the rollout goes on: sapiadm rollout status ${r.uuid} --watch`);
        cli.exitCode = 130;
        return;
    }
    if (json) {
        cli.json(r);
    } else {
        for (const line of summary(r)) cli.out(line);
    }
    cli.exitCode = exitFor(r);
}

/** Polls until the rollout ends (or Ctrl-C), drawing progress unless --json. */
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
            if (r.state !== 'running') break;
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
    return r;
}
