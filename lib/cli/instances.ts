// sapiadm instances: search (by server, image, service, type, application),
// get, create, update, upgrade, delete, and forget-server (drop the records of
// every agent instance of a deleted or wiped server, without calling CNAPI).
// delete and forget-server ask first on a terminal, and need --yes elsewhere.

import type { Command } from 'commander';

import type { Dict, Instance } from '../model/types.js';
import { mapsOf, mustUuid, needsChange, updateAction, withMapOptions, type MapOpts } from './args.js';
import { confirm, type Cli } from './common.js';
import { EXIT_REFUSED, UsageError } from './errors.js';
import { param, plural, table } from './table.js';

interface SearchOpts {
    server?: string;
    image?: string;
    service?: string;
    type?: string;
    application?: string;
}

const RECORD_ONLY_HELP = 'agents: only write the SAPI record, no CNAPI call (sent without Accept-Version, as an agent postinstall does)';
const YES_HELP = 'do not ask (needed when stdin is not a terminal)';
const ASKS_HELP = '\nAsks first (y/N) on a terminal; elsewhere it needs --yes (exit 2 without).\n';

/** A question not answered y: nothing done, exit 2. */
function refused(cli: Cli, what: string): void {
    cli.warn(`Nothing changed: ${what}.`);
    cli.exitCode = EXIT_REFUSED;
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('list', { isDefault: true })
        .description('list or search instances (all pages)')
        .option('--server <UUID>', 'params.server_uuid')
        .option('--image <UUID>', 'params.image_uuid')
        .option('--service <SERVICE>', 'service UUID or name')
        .option('--type <TYPE>', 'vm or agent')
        .option('--application <APP>', 'application UUID or name')
        .action(async (o: SearchOpts, c: Command) => {
            const api = cli.sapi(c);
            if (o.type !== undefined && o.type !== 'vm' && o.type !== 'agent') {
                throw new UsageError(`--type must be vm or agent, not "${o.type}"`);
            }
            const query = {
                server_uuid: o.server === undefined ? undefined : mustUuid(o.server, '--server'),
                image_uuid: o.image === undefined ? undefined : mustUuid(o.image, '--image'),
                service_uuid: o.service === undefined ? undefined : (await api.resolveService(o.service)).uuid,
                application_uuid: o.application === undefined ? undefined : (await api.resolveApplication(o.application)).uuid,
                type: o.type,
            };
            const insts = await api.listInstances(query);
            if (cli.globals(c).json) {
                cli.json(insts);
                return;
            }
            const names = new Map((await api.listServices()).map((s) => [s.uuid, s.name]));
            cli.out(
                table(insts, [
                    { header: 'uuid', get: (i) => i.uuid },
                    { header: 'service', get: (i) => names.get(i.service_uuid) ?? i.service_uuid },
                    { header: 'type', get: (i) => i.type },
                    { header: 'server', get: (i) => param(i, 'server_uuid') },
                    { header: 'image', get: (i) => param(i, 'image_uuid') },
                    { header: 'alias', get: (i) => param(i, 'alias') },
                ]),
            );
        });

    cmd.command('get')
        .description('show one instance as JSON')
        .argument('<UUID>', 'instance UUID')
        .action(async (uuid: string, _o: unknown, c: Command) => {
            cli.json(await cli.sapi(c).getInstance(mustUuid(uuid, 'instance')));
        });

    withMapOptions(
        cmd
            .command('create')
            .description('create an instance (in full mode: provisions the VM or installs the agent)')
            .requiredOption('--service <SERVICE>', 'service UUID or name')
            .option('--uuid <UUID>', 'use this UUID (agents: the uuid the node adopted)')
            .option('--server <UUID>', 'params.server_uuid (required for agents)')
            .option('--image <UUID>', 'params.image_uuid (default: inherited from the service)')
            .option('--async', 'vm: return once VMAPI accepted the job (shows job_uuid)')
            .option('--exists', 'adopt an existing VM or agent instead of deploying it')
            .option('--record-only', RECORD_ONLY_HELP),
    ).action(
        async (
            o: MapOpts & { service: string; uuid?: string; server?: string; image?: string; async?: boolean; exists?: boolean; recordOnly?: boolean },
            c: Command,
        ) => {
            const api = cli.sapi(c);
            const body: Dict = mapsOf(o);
            const params = (body.params as Dict | undefined) ?? {};
            if (o.server !== undefined) params.server_uuid = mustUuid(o.server, '--server');
            if (o.image !== undefined) params.image_uuid = mustUuid(o.image, '--image');
            if (Object.keys(params).length > 0) body.params = params;
            if (o.uuid !== undefined) body.uuid = mustUuid(o.uuid, '--uuid');
            if (o.exists) body.exists = true;
            body.service_uuid = (await api.resolveService(o.service)).uuid;
            const created = await api.post<Instance & { job_uuid?: string }>('/instances', body, {
                v1: o.recordOnly === true,
                ...(o.async ? { query: { async: true } } : {}),
            });
            const job = created.job_uuid ? ` (job ${created.job_uuid})` : '';
            cli.report(c, created, `created instance ${created.uuid}${job}`);
        },
    );

    withMapOptions(
        cmd
            .command('update')
            .description('change params, metadata or manifests of an instance (record only)')
            .argument('<UUID>', 'instance UUID')
            .option('--action <ACTION>', 'update (merge, default), replace, or delete (remove the keys given)'),
    ).action(async (uuid: string, o: MapOpts & { action?: string }, c: Command) => {
        const action = updateAction(o.action);
        const body: Dict = { ...mapsOf(o, action === 'delete'), action };
        needsChange(body);
        const updated = await cli.sapi(c).put<Instance>(`/instances/${mustUuid(uuid, 'instance')}`, body);
        cli.report(c, updated, `updated instance ${updated.uuid}`);
    });

    cmd.command('upgrade')
        .description('reprovision a VM / reinstall an agent with another image')
        .argument('<UUID>', 'instance UUID')
        .argument('<IMAGE>', 'image UUID')
        .action(async (uuid: string, image: string, _o: unknown, c: Command) => {
            const body = { image_uuid: mustUuid(image, 'IMAGE') };
            const inst = await cli.sapi(c).put<Instance>(`/instances/${mustUuid(uuid, 'instance')}/upgrade`, body);
            cli.report(c, inst, `upgraded instance ${inst.uuid} to image ${param(inst, 'image_uuid') ?? image}`);
        });

    cmd.command('delete')
        .description('delete an instance (in full mode: destroys the VM or uninstalls the agent)')
        .argument('<UUID>', 'instance UUID')
        .option('--record-only', RECORD_ONLY_HELP)
        .option('--yes', YES_HELP)
        .addHelpText('after', ASKS_HELP)
        .action(async (uuid: string, o: { recordOnly?: boolean; yes?: boolean }, c: Command) => {
            const id = mustUuid(uuid, 'instance');
            const api = cli.sapi(c);
            const ok = await confirm(cli, {
                yes: o.yes,
                action: `delete instance ${id}`,
                question: async () => {
                    const inst = await api.getInstance(id);
                    const svc = await api.get<{ name?: string }>(`/services/${inst.service_uuid}`).catch(() => undefined);
                    const what = [svc?.name ?? inst.service_uuid, inst.type, 'instance', id].filter(Boolean).join(' ');
                    const server = param(inst, 'server_uuid');
                    const effect = o.recordOnly
                        ? 'its SAPI record only'
                        : inst.type === 'agent'
                          ? 'in full mode this uninstalls the agent'
                          : 'in full mode this destroys the VM';
                    return `Delete ${what}${server ? ` on server ${server}` : ''} (${effect})?`;
                },
            });
            if (!ok) return refused(cli, `instance ${id} not deleted`);
            await api.del(`/instances/${id}`, { v1: o.recordOnly === true });
            cli.report(c, { deleted: id }, `deleted instance ${id}${o.recordOnly ? ' (record only)' : ''}`);
        });

    cmd.command('forget-server')
        .description('delete the records of every agent instance of a server (no CNAPI call; for deleted or wiped servers)')
        .argument('<SERVER>', 'server UUID')
        .option('--dry-run', 'only list what would be deleted')
        .option('--yes', YES_HELP)
        .addHelpText('after', ASKS_HELP.replace('Asks first', 'Without --dry-run, asks first'))
        .action(async (server: string, o: { dryRun?: boolean; yes?: boolean }, c: Command) => {
            const path = `/servers/${mustUuid(server, 'SERVER')}/instances`;
            const api = cli.sapi(c);
            if (!o.dryRun) {
                const ok = await confirm(cli, {
                    yes: o.yes,
                    action: `forget the agent instances of server ${server}`,
                    question: async () => {
                        const would = await api.del<{ deleted: string[] }>(path, { query: { dry_run: true } });
                        return `Forget ${plural(would.deleted.length, 'agent instance record')} of server ${server} (records only)?`;
                    },
                });
                if (!ok) return refused(cli, `the records of server ${server} kept`);
            }
            const res = await api.del<{ server_uuid: string; deleted: string[] }>(path, o.dryRun ? { query: { dry_run: true } } : {});
            const verb = o.dryRun ? 'would delete' : 'deleted';
            cli.report(c, res, `${verb} ${res.deleted.length} agent instance record(s) of server ${server}${res.deleted.map((u) => `\n  ${u}`).join('')}`);
        });
}
