// Manifests: config-file descriptions referenced by name from the
// `manifests` maps of applications, services and instances.

import { randomUUID } from 'node:crypto';

import semver from 'semver';

import { invalidArgument, noSuch } from '../errors.js';
import { ALL, type Store } from '../stor/store.js';
import type { Ctx } from './context.js';
import { findWithMaster, listQuery, parsePaging, type ListResult } from './lists.js';
import { BUCKET_OF, compact, find, insert, mustGet, remove } from './objects.js';
import type { Dict, Manifest } from './types.js';
import { flagValue, validateRequest } from './validate.js';

export async function createManifest(ctx: Ctx, params: Dict): Promise<Manifest> {
    validateRequest('CreateManifest', params);
    const version = params.version === undefined ? '1.0.0' : params.version;
    if (!semver.valid(version)) {
        throw invalidArgument('invalid version');
    }
    const manifest = compact<Manifest>({
        uuid: params.uuid ?? randomUUID(),
        name: params.name,
        path: params.path,
        template: params.template,
        post_cmd: params.post_cmd,
        post_cmd_linux: params.post_cmd_linux,
        version,
        master: flagValue(params.master) ? true : undefined,
    });
    return (await insert(ctx.store, 'manifest', manifest)).value;
}

export async function getManifest(ctx: Ctx, uuid: string): Promise<Manifest> {
    return (await mustGet<Manifest>(ctx.store, 'manifest', uuid)).value;
}

export async function listManifests(ctx: Ctx, params: Dict = {}): Promise<ListResult<Manifest>> {
    listQuery('ListManifests', params, []);
    return findWithMaster<Manifest>(ctx, params, BUCKET_OF.manifest, ALL, parsePaging(params));
}

/** Every manifest uuid referenced must exist: else 404 `no such manifest: <uuid>`, nothing written. */
export async function checkManifestRefs(store: Store, manifests: unknown): Promise<void> {
    if (!manifests || typeof manifests !== 'object') {
        return;
    }
    for (const uuid of Object.values(manifests as Record<string, unknown>)) {
        if (typeof uuid !== 'string' || !(await find(store, 'manifest', uuid))) {
            throw noSuch('manifest', String(uuid));
        }
    }
}

/**
 * A manifest still referenced by an application, service or instance is not
 * deleted: 409 `manifest is in use by <kind> <uuid>`, nothing removed.
 */
export async function deleteManifest(ctx: Ctx, uuid: string): Promise<void> {
    await mustGet(ctx.store, 'manifest', uuid);
    for (const kind of ['application', 'service', 'instance'] as const) {
        for await (const chunk of ctx.store.iterate<Dict>(BUCKET_OF[kind], ALL, 1000)) {
            for (const { value } of chunk) {
                const refs = value.manifests;
                if (refs && typeof refs === 'object' && Object.values(refs).includes(uuid)) {
                    throw invalidArgument(`manifest is in use by ${kind} ${String(value.uuid)}`);
                }
            }
        }
    }
    await remove(ctx.store, 'manifest', uuid);
}
