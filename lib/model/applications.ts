// Applications: the top of the tree (sdc, manta), with an owner and an
// optional metadata_schema their metadata must satisfy.

import { randomUUID } from 'node:crypto';

import jsonSchema from 'json-schema';

import { invalidArgument, schemaValidation } from '../errors.js';
import { and, eq, type Filter } from '../stor/store.js';
import { isPlainObject } from './attributes.js';
import type { Ctx } from './context.js';
import { findWithMaster, listQuery, parsePaging, type ListResult } from './lists.js';
import { checkManifestRefs } from './manifests.js';
import { BUCKET_OF, compact, insert, mustGet, remove } from './objects.js';
import type { Application, Dict } from './types.js';
import { updateObject } from './update.js';
import { flagValue, validateRequest } from './validate.js';

/** Application metadata must satisfy its metadata_schema (jsprim wording). */
export function checkMetadataSchema(app: Application): void {
    if (!isPlainObject(app.metadata_schema) || !isPlainObject(app.metadata)) {
        return;
    }
    const report = jsonSchema.validate(app.metadata, app.metadata_schema);
    const first = report.errors[0];
    if (!report.valid && first) {
        // json-schema 0.4 prefixes type errors with the value ("5 - number
        // value found…"); 2.1.2's validator did not.
        const reason = first.message.toLowerCase().replace(/^[\s\S]* - (\w+ value found)/, '$1');
        throw schemaValidation(`property "${first.property}": ${reason}`);
    }
}

export async function createApplication(ctx: Ctx, params: Dict): Promise<Application> {
    validateRequest('CreateApplication', params);
    await checkManifestRefs(ctx.store, params.manifests);
    const app = compact<Application>({
        uuid: params.uuid ?? randomUUID(),
        name: params.name,
        owner_uuid: params.owner_uuid,
        params: params.params,
        metadata: params.metadata,
        metadata_schema: params.metadata_schema,
        manifests: params.manifests,
        master: flagValue(params.master) ? true : undefined,
    });
    checkMetadataSchema(app);
    return (await insert(ctx.store, 'application', app)).value;
}

export async function getApplication(ctx: Ctx, uuid: string): Promise<{ value: Application; etag: string }> {
    return mustGet<Application>(ctx.store, 'application', uuid);
}

export async function listApplications(ctx: Ctx, params: Dict): Promise<ListResult<Application>> {
    const q = listQuery('ListApplications', params, ['name', 'owner_uuid']);
    const filter: Filter = and(...Object.entries(q).map(([k, v]) => eq(k, String(v))));
    return findWithMaster<Application>(ctx, params, BUCKET_OF.application, filter, parsePaging(params));
}

export async function updateApplication(ctx: Ctx, uuid: string, params: Dict, ifMatch?: string[]): Promise<{ value: Application; etag: string }> {
    return updateObject<Application>(
        ctx,
        {
            kind: 'application',
            schemaId: 'UpdateApplication',
            fields: ['params', 'metadata', 'metadata_schema', 'manifests'],
            extraKeys: ['owner_uuid'],
            finish: (next, body) => {
                if (body.owner_uuid) {
                    next.owner_uuid = body.owner_uuid as string;
                }
                checkMetadataSchema(next);
                return next;
            },
        },
        uuid,
        params,
        ifMatch,
    );
}

export async function deleteApplication(ctx: Ctx, uuid: string): Promise<void> {
    const app = await mustGet<Application>(ctx.store, 'application', uuid);
    const services = await ctx.store.count(BUCKET_OF.service, eq('application_uuid', uuid));
    if (services > 0) {
        throw invalidArgument('application has services');
    }
    await remove(ctx.store, 'application', uuid, app.etag);
}
