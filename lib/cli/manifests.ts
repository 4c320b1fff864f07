// sapiadm manifests: list, get, create, delete. SAPI has no route to
// change a manifest: create a new version and point the owners at it.

import { readFileSync } from 'node:fs';

import type { Command } from 'commander';

import type { Dict, Manifest } from '../model/types.js';
import { mustUuid } from './args.js';
import type { Cli } from './common.js';
import { UsageError } from './errors.js';

function textArg(raw: string, what: string): string {
    if (!raw.startsWith('@')) {
        return raw;
    }
    try {
        return readFileSync(raw.slice(1), 'utf8');
    } catch (err) {
        throw new UsageError(`${what}: cannot read ${raw.slice(1)}: ${(err as Error).message}`);
    }
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('list', { isDefault: true })
        .description('list manifests')
        .action(async (_o: unknown, c: Command) => {
            const list = await cli.sapi(c).listManifests();
            cli.list(c, list, [
                { header: 'uuid', get: (m) => m.uuid },
                { header: 'name', get: (m) => m.name },
                { header: 'version', get: (m) => m.version },
                { header: 'path', get: (m) => m.path },
            ]);
        });

    cmd.command('get')
        .description('show one manifest as JSON')
        .argument('<UUID>', 'manifest UUID')
        .action(async (uuid: string, _o: unknown, c: Command) => {
            cli.json(await cli.sapi(c).get<Manifest>(`/manifests/${mustUuid(uuid, 'manifest')}`));
        });

    cmd.command('create')
        .description('create a manifest')
        .requiredOption('--name <NAME>', 'manifest name')
        .requiredOption('--path <PATH>', 'where config-agent writes the rendered file')
        .requiredOption('--template <TEXT>', 'the hogan template, or @FILE to read it from a file')
        .option('--post-cmd <CMD>', 'command run after the file changed')
        .option('--version <VERSION>', 'manifest version (default 1.0.0)')
        .option('--uuid <UUID>', 'use this UUID instead of a generated one')
        .option('--master', 'mark as a master (multi-DC) object')
        .action(
            async (o: { name: string; path: string; template: string; postCmd?: string; version?: string; uuid?: string; master?: boolean }, c: Command) => {
                const body: Dict = { name: o.name, path: o.path, template: textArg(o.template, '--template') };
                if (o.postCmd !== undefined) body.post_cmd = o.postCmd;
                if (o.version !== undefined) body.version = o.version;
                if (o.uuid !== undefined) body.uuid = mustUuid(o.uuid, '--uuid');
                if (o.master) body.master = true;
                const m = await cli.sapi(c).post<Manifest>('/manifests', body);
                cli.report(c, m, `created manifest ${m.uuid} (${m.name} ${m.version})`);
            },
        );

    cmd.command('delete')
        .description('delete a manifest')
        .argument('<UUID>', 'manifest UUID')
        .action(async (uuid: string, _o: unknown, c: Command) => {
            await cli.sapi(c).del(`/manifests/${mustUuid(uuid, 'manifest')}`);
            cli.report(c, { deleted: uuid }, `deleted manifest ${uuid}`);
        });
}
