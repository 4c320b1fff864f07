// Services: one per application role (vm) or agent (agent), holding the
// image and the params/metadata their instances inherit.

import { randomUUID } from 'node:crypto';

import { invalidArgument, noSuch } from '../errors.js';
import { and, eq, type Filter } from '../stor/store.js';
import type { Ctx } from './context.js';
import { findWithMaster, listQuery, parsePaging, type ListResult } from './lists.js';
import { checkManifestRefs } from './manifests.js';
import { BUCKET_OF, compact, find, insert, mustGet, remove } from './objects.js';
import type { Application, Dict, InstanceType, Service } from './types.js';
import { updateObject } from './update.js';
import { flagValue, validateRequest } from './validate.js';

export function parseType(raw: unknown): InstanceType {
    if (!raw) {
        return 'vm';
    }
    if (raw === 'vm' || raw === 'agent') {
        return raw;
    }
    throw invalidArgument(`service type is invalid: ${typeof raw === 'string' ? raw : JSON.stringify(raw)}`);
}

export async function createService(ctx: Ctx, params: Dict): Promise<Service> {
    validateRequest('CreateService', params);
    const type = parseType(params.type);
    await checkManifestRefs(ctx.store, params.manifests);
    const appUuid = params.application_uuid;
    if (!(await find<Application>(ctx.store, 'application', appUuid))) {
        throw noSuch('application', appUuid);
    }
    const svc = compact<Service>({
        uuid: params.uuid ?? randomUUID(),
        name: params.name,
        application_uuid: appUuid,
        params: params.params,
        metadata: params.metadata,
        manifests: params.manifests,
        master: flagValue(params.master) ? true : undefined,
        type,
    });
    return (await insert(ctx.store, 'service', svc)).value;
}

export async function getService(ctx: Ctx, uuid: string): Promise<{ value: Service; etag: string }> {
    return mustGet<Service>(ctx.store, 'service', uuid);
}

/** v1 clients see only vm services unless they ask for a type. */
export async function listServices(ctx: Ctx, params: Dict, v2: boolean): Promise<ListResult<Service>> {
    const q = listQuery('ListServices', params, ['name', 'application_uuid', 'type']);
    if (!v2 && q.type === undefined) {
        q.type = 'vm';
    }
    const filter: Filter = and(...Object.entries(q).map(([k, v]) => eq(k, String(v))));
    return findWithMaster<Service>(ctx, params, BUCKET_OF.service, filter, parsePaging(params));
}

export async function updateService(ctx: Ctx, uuid: string, params: Dict, ifMatch?: string[]): Promise<{ value: Service; etag: string }> {
    return updateObject<Service>(ctx, { kind: 'service', schemaId: 'UpdateService', fields: ['params', 'metadata', 'manifests'] }, uuid, params, ifMatch);
}

export async function deleteService(ctx: Ctx, uuid: string): Promise<void> {
    const svc = await mustGet<Service>(ctx.store, 'service', uuid);
    const instances = await ctx.store.count(BUCKET_OF.instance, eq('service_uuid', uuid));
    if (instances > 0) {
        throw invalidArgument('service has instances');
    }
    await remove(ctx.store, 'service', uuid, svc.etag);
}
