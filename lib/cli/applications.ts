// sapiadm applications: list, get, create, update, delete.

import type { Command } from 'commander';

import type { Application, Dict } from '../model/types.js';
import { mapsOf, mustUuid, needsChange, updateAction, withMapOptions, type MapOpts } from './args.js';
import type { Cli } from './common.js';

export function define(cli: Cli, cmd: Command): void {
    cmd.command('list', { isDefault: true })
        .description('list applications')
        .option('--name <NAME>', 'only applications with this name')
        .option('--owner <UUID>', 'only applications of this owner')
        .action(async (o: { name?: string; owner?: string }, c: Command) => {
            const apps = await cli.sapi(c).listApplications({ name: o.name, owner_uuid: o.owner });
            cli.list(c, apps, [
                { header: 'uuid', get: (a) => a.uuid },
                { header: 'name', get: (a) => a.name },
                { header: 'owner', get: (a) => a.owner_uuid },
            ]);
        });

    cmd.command('get')
        .description('show one application (by UUID or name) as JSON')
        .argument('<APP>', 'application UUID or name')
        .action(async (app: string, _o: unknown, c: Command) => {
            cli.json(await cli.sapi(c).resolveApplication(app));
        });

    withMapOptions(
        cmd
            .command('create')
            .description('create an application')
            .usage('--owner <UUID> [options] <NAME>')
            .argument('<NAME>', 'application name (e.g. sdc)')
            .requiredOption('--owner <UUID>', 'required: owner_uuid (the admin user)')
            .option('--uuid <UUID>', 'use this UUID instead of a generated one')
            .option('--metadata-schema <JSON>', 'metadata_schema as a JSON object, or @FILE')
            .option('--master', 'mark as a master (multi-DC) object'),
    ).action(async (name: string, o: MapOpts & { owner: string; uuid?: string; master?: boolean }, c: Command) => {
        const body: Dict = { name, owner_uuid: mustUuid(o.owner, '--owner'), ...mapsOf(o) };
        if (o.uuid !== undefined) body.uuid = mustUuid(o.uuid, '--uuid');
        if (o.master) body.master = true;
        const created = await cli.sapi(c).post<Application>('/applications', body);
        cli.report(c, created, `created application ${created.uuid} (${created.name})`);
    });

    withMapOptions(
        cmd
            .command('update')
            .description('change params, metadata, metadata_schema, manifests or owner of an application')
            .argument('<APP>', 'application UUID or name')
            .option('--action <ACTION>', 'update (merge, default), replace, or delete (remove the keys given)')
            .option('--metadata-schema <JSON>', 'metadata_schema as a JSON object, or @FILE')
            .option('--owner <UUID>', 'new owner_uuid'),
    ).action(async (app: string, o: MapOpts & { action?: string; owner?: string }, c: Command) => {
        const action = updateAction(o.action);
        const body: Dict = { ...mapsOf(o, action === 'delete'), action };
        if (o.owner !== undefined) body.owner_uuid = mustUuid(o.owner, '--owner');
        needsChange(body);
        const api = cli.sapi(c);
        const uuid = (await api.resolveApplication(app)).uuid;
        const updated = await api.put<Application>(`/applications/${uuid}`, body);
        cli.report(c, updated, `updated application ${updated.uuid} (${updated.name})`);
    });

    cmd.command('delete')
        .description('delete an application (its services must be deleted first)')
        .argument('<APP>', 'application UUID or name')
        .action(async (app: string, _o: unknown, c: Command) => {
            const api = cli.sapi(c);
            const a = await api.resolveApplication(app);
            await api.del(`/applications/${a.uuid}`);
            cli.report(c, { deleted: a.uuid }, `deleted application ${a.uuid} (${a.name})`);
        });
}
