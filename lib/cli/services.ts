// sapiadm services: list, get, create, update, delete.

import type { Command } from 'commander';

import type { Dict, Service } from '../model/types.js';
import { mapsOf, mustUuid, needsChange, updateAction, withMapOptions, type MapOpts } from './args.js';
import type { Cli } from './common.js';
import { UsageError } from './errors.js';
import { param } from './table.js';

function serviceType(raw: string | undefined): 'vm' | 'agent' | undefined {
    if (raw === undefined || raw === 'vm' || raw === 'agent') {
        return raw;
    }
    throw new UsageError(`--type must be vm or agent, not "${raw}"`);
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('list', { isDefault: true })
        .description('list services')
        .option('--name <NAME>', 'only services with this name')
        .option('--application <APP>', 'only services of this application (UUID or name)')
        .option('--type <TYPE>', 'vm or agent')
        .action(async (o: { name?: string; application?: string; type?: string }, c: Command) => {
            const api = cli.sapi(c);
            const type = serviceType(o.type);
            const application = o.application === undefined ? undefined : (await api.resolveApplication(o.application)).uuid;
            const svcs = await api.listServices({ name: o.name, application_uuid: application, type });
            cli.list(c, svcs, [
                { header: 'uuid', get: (s) => s.uuid },
                { header: 'name', get: (s) => s.name },
                { header: 'type', get: (s) => s.type },
                { header: 'image', get: (s) => param(s, 'image_uuid') },
                { header: 'application', get: (s) => s.application_uuid },
            ]);
        });

    cmd.command('get')
        .description('show one service (by UUID or name) as JSON')
        .argument('<SERVICE>', 'service UUID or name')
        .action(async (svc: string, _o: unknown, c: Command) => {
            cli.json(await cli.sapi(c).resolveService(svc));
        });

    withMapOptions(
        cmd
            .command('create')
            .description('create a service')
            .argument('<NAME>', 'service name (for an agent: the agent image name, e.g. vm-agent)')
            .requiredOption('--application <APP>', 'the application (UUID or name)')
            .option('--type <TYPE>', 'vm (default) or agent')
            .option('--uuid <UUID>', 'use this UUID instead of a generated one')
            .option('--master', 'mark as a master (multi-DC) object'),
    ).action(async (name: string, o: MapOpts & { application: string; type?: string; uuid?: string; master?: boolean }, c: Command) => {
        const api = cli.sapi(c);
        const body: Dict = { name, ...mapsOf(o) };
        const type = serviceType(o.type);
        if (type) body.type = type;
        if (o.uuid !== undefined) body.uuid = mustUuid(o.uuid, '--uuid');
        if (o.master) body.master = true;
        body.application_uuid = (await api.resolveApplication(o.application)).uuid;
        const created = await api.post<Service>('/services', body);
        cli.report(c, created, `created ${created.type} service ${created.uuid} (${created.name})`);
    });

    withMapOptions(
        cmd
            .command('update')
            .description('change params, metadata or manifests of a service')
            .argument('<SERVICE>', 'service UUID or name')
            .option('--action <ACTION>', 'update (merge, default), replace, or delete (remove the keys given)'),
    ).action(async (svc: string, o: MapOpts & { action?: string }, c: Command) => {
        const action = updateAction(o.action);
        const body: Dict = { ...mapsOf(o, action === 'delete'), action };
        needsChange(body);
        const api = cli.sapi(c);
        const uuid = (await api.resolveService(svc)).uuid;
        const updated = await api.put<Service>(`/services/${uuid}`, body);
        cli.report(c, updated, `updated service ${updated.uuid} (${updated.name})`);
    });

    cmd.command('delete')
        .description('delete a service (its instances must be deleted first)')
        .argument('<SERVICE>', 'service UUID or name')
        .action(async (svc: string, _o: unknown, c: Command) => {
            const api = cli.sapi(c);
            const s = await api.resolveService(svc);
            await api.del(`/services/${s.uuid}`);
            cli.report(c, { deleted: s.uuid }, `deleted service ${s.uuid} (${s.name})`);
        });
}
