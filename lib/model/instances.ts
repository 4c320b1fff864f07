// Instances: records of vm zones and per-server agents. Create, upgrade
// and delete record only in proto mode; in full mode they go through the
// Deployer of the instance's type (lib/deploy/).

import { randomUUID } from 'node:crypto';

import { invalidArgument, missingKeys, missingParameter, noDeployer } from '../errors.js';
import type { CreateResult, DeployReq, Deployer, InstancePlan, InstanceRecords } from './deployer.js';
import { BUCKETS, staleIndexCopies } from '../stor/buckets.js';
import { jsonLists } from '../stor/forwarding.js';
import { and, eq, oneOf, type Filter, type Store, type Stored } from '../stor/store.js';
import { adoptAgent, beginAdoption, type PendingAdoption } from './adoption.js';
import { copyInto, isPlainObject, mergeAttributes } from './attributes.js';
import { loadParents } from './config-doc.js';
import type { Ctx, ReqInfo } from './context.js';
import { mergeParams, onServer, removeIfPresent, withIndexes, type RecordDeps } from './instance-records.js';
import { findWithMaster, masterStore, listQuery, parsePaging, type ListResult } from './lists.js';
import { checkManifestRefs } from './manifests.js';
import { BUCKET_OF, compact, find, insert, mustGet, remove } from './objects.js';
import type { Application, Dict, Instance, Service } from './types.js';
import { updateObject } from './update.js';
import { flagValue, isUuid, validateRequest } from './validate.js';
import type { RequestOf } from '../../schemas/requests.js';

// ---- records

/** The record operations a deployer may use. */
export function instanceRecords(deps: RecordDeps): InstanceRecords {
    return {
        get: (uuid) => find<Instance>(deps.store, 'instance', uuid),
        insert: async (inst) => (await insert(deps.store, 'instance', withIndexes(inst))).value,
        remove: async (uuid) => {
            await removeIfPresent(deps, uuid);
        },
        setImage: (uuid, imageUuid) => mergeParams(deps, uuid, { image_uuid: imageUuid }),
        mergeParams: (uuid, patch) => mergeParams(deps, uuid, patch),
        adoptAgent: (inst) => adoptAgent(deps, inst),
        findOnServer: async (serviceUuid, serverUuid) => (await onServer(deps, serviceUuid, serverUuid)).map((s) => s.value),
    };
}

// ---- create

/**
 * `opts`: what the caller checked already for this operation (a rollout
 * checks its image and servers once for all its items), and its deadline.
 */
export async function createInstance(
    ctx: Ctx,
    req: ReqInfo,
    params: Dict,
    opts: { imageChecked?: boolean; serverChecked?: boolean; signal?: AbortSignal } = {},
): Promise<CreateResult> {
    validateRequest('CreateInstance', params);
    const exists = flagValue(params.exists);
    if (exists && params.uuid === undefined) {
        throw missingKeys(['uuid']);
    }
    const uuid: string = params.uuid ?? randomUUID();
    // An agent's own registration (v1, full mode) reads what its adoption
    // needs while its service and application are read.
    const early = ctx.mode.current === 'full' && !req.v2 && !exists ? adoptionAhead(ctx, uuid, params) : null;
    try {
        return await createNow(ctx, req, params, opts, { exists, uuid, early });
    } finally {
        early?.cancel();
    }
}

/**
 * A create's service and application. An agent's own registration (it only
 * records) reads them as GetConfig does (ConfigAnswers.parents: on Moray,
 * kept or from the local copy within GetConfig's bound, so a registration
 * costs no Moray read for them); any other create, and a registration whose
 * service turns out not to be an agent's, reads the store.
 */
async function parentsOf(ctx: Ctx, svcUuid: string, registration: boolean): Promise<{ service: Service; application: Application }> {
    const kept = registration ? ctx.configs?.parents?.(ctx) : undefined;
    if (kept !== undefined) {
        const got = await loadParents(ctx, svcUuid, kept);
        if (got.service.type === 'agent') {
            return got;
        }
    }
    return loadParents(ctx, svcUuid);
}

/** The adoption a record-only agent create will end in, begun (a placed agent's, in full mode). */
function adoptionAhead(ctx: Ctx, uuid: string, params: Dict): PendingAdoption | null {
    const server = isPlainObject(params.params) ? params.params.server_uuid : undefined;
    if (typeof params.service_uuid !== 'string' || typeof server !== 'string' || server === '') {
        return null;
    }
    return beginAdoption(ctx, uuid, params.service_uuid, server);
}

async function createNow(
    ctx: Ctx,
    req: ReqInfo,
    params: Dict & RequestOf<'CreateInstance'>,
    opts: { imageChecked?: boolean; serverChecked?: boolean; signal?: AbortSignal },
    { exists, uuid, early }: { exists: boolean; uuid: string; early: PendingAdoption | null },
): Promise<CreateResult> {
    const svcUuid = params.service_uuid;
    // Both read at once; a missing manifest is reported before a missing service.
    const [refs, parents] = await Promise.allSettled([checkManifestRefs(ctx.store, params.manifests), parentsOf(ctx, svcUuid, early !== null)]);
    if (refs.status === 'rejected') {
        throw refs.reason;
    }
    if (parents.status === 'rejected') {
        throw parents.reason;
    }
    const { service, application } = parents.value;
    const draft = compact<Instance>({
        uuid,
        service_uuid: svcUuid,
        params: isPlainObject(params.params) ? copyInto({}, params.params) : undefined,
        metadata: params.metadata,
        manifests: params.manifests,
        master: flagValue(params.master) ? true : undefined,
        type: service.type,
    });
    const merged = mergeAttributes(application, service, draft);
    const full = ctx.mode.current === 'full';
    // An agent request only records (never installs) in proto mode and in
    // the v1 view, which is what agents' own postinstall scripts send.
    const recordOnlyAgent = service.type === 'agent' && (!full || !req.v2);

    // params.image_uuid on every instance, from the merged params.
    const image = merged.params.image_uuid;
    if (image !== undefined && image !== null && image !== '') {
        if (!isUuid(image)) {
            throw invalidArgument('params.image_uuid must be a UUID');
        }
        draft.params = copyInto(copyInto({}, draft.params), { image_uuid: image });
    } else if (full && !recordOnlyAgent) {
        throw missingKeys(['params.image_uuid']);
    }
    // Agents that would be installed need their server; a record-only agent
    // without one is recorded unplaced (`sapiadm migrate` places it later).
    const server = draft.params?.server_uuid;
    const unplaced = service.type === 'agent' && (server === undefined || server === '');
    if (unplaced && !recordOnlyAgent) {
        throw missingKeys(['params.server_uuid']);
    }
    if (unplaced && draft.params && 'server_uuid' in draft.params) {
        delete draft.params.server_uuid;
    }

    const plan: InstancePlan = { instance: withIndexes(draft), service, application, merged };
    const dreq: DeployReq = { reqId: req.reqId, log: req.log, async: flagValue(params.async), ...opts };

    // An agent: a v1 request (what every agent's own postinstall sends: no
    // Accept-Version) only records, or an agent registering itself would
    // start a second install on its server mid-install; so does proto mode.
    // Adoption (`exists: true`) never deploys but checks server.agents
    // whenever CNAPI is there (full mode), whatever the version.
    const checkedAdoption = exists && full && ctx.deployers.agent !== undefined && !unplaced;
    const install = full && req.v2 && !exists;
    if (service.type === 'agent' && !checkedAdoption && !install) {
        return { instance: await (early ? early.finish(plan.instance) : adoptAgent(ctx, plan.instance)) };
    }
    // Not a record-only adoption: the next one of that (service, server) need not wait for this create.
    early?.cancel();
    if (service.type === 'agent') {
        if (checkedAdoption && ctx.deployers.agent) {
            return { instance: await ctx.deployers.agent.adopt(dreq, plan) };
        }
        return requireDeployer(ctx, 'agent').create(dreq, plan);
    }

    if (!full) {
        return { instance: (await insert(ctx.store, 'instance', plan.instance)).value };
    }
    const deployer = requireDeployer(ctx, 'vm');
    if (await find(ctx.store, 'instance', draft.uuid)) {
        throw invalidArgument(`instance already exists: ${draft.uuid}`);
    }
    if (exists) {
        return { instance: await deployer.adopt(dreq, plan) };
    }
    return deployer.create(dreq, plan);
}

/**
 * Whether a request on an existing instance goes through its deployer: in
 * full mode, always for vm; for agents only in the v2 view (a v1 request,
 * like an agent's own postinstall, only records: deploying it would start a
 * second install on a server that is already installing that agent).
 */
function deploys(ctx: Ctx, req: ReqInfo, inst: Instance): boolean {
    return ctx.mode.current === 'full' && (inst.type === 'vm' || req.v2);
}

function requireDeployer(ctx: Ctx, type: 'vm' | 'agent'): Deployer {
    const d = ctx.deployers[type];
    if (!d) {
        throw noDeployer(type);
    }
    return d;
}

// ---- read

export async function getInstance(ctx: Ctx, uuid: string): Promise<Stored<Instance>> {
    return mustGet<Instance>(ctx.store, 'instance', uuid);
}

/**
 * `omit`: the top-level keys the response leaves out; when given, and the
 * store has the JSON fast path, matches come back as ready JSON text.
 *
 * `unindexed=true` keeps only records whose top-level index copies of
 * params.server_uuid / params.image_uuid are missing or stale (as SAPI
 * 2.1.2 wrote them). No store index can answer that, so the matches of the
 * other filters are scanned in chunks and checked one by one: the answer
 * is always streamed (paging it would rescan for every page), and the
 * JSON fast path is not used, since it cannot see the copies it removes.
 */
export async function listInstances(ctx: Ctx, req: ReqInfo, params: Dict, omit?: readonly string[]): Promise<ListResult<Instance>> {
    const q = listQuery('ListInstances', params, ['service_uuid', 'application_uuid', 'type', 'server_uuid', 'image_uuid', 'unindexed']);
    const onlyUnindexed = flagValue(q.unindexed);
    if (!req.v2) {
        // v1 view: an implicit type=vm (not for the unindexed search, which
        // looks at every record), and no type filter at all with a service_uuid.
        if (q.service_uuid !== undefined) {
            delete q.type;
        } else if (q.type === undefined && !onlyUnindexed) {
            q.type = 'vm';
        }
    }
    const parts: Filter[] = [];
    for (const key of ['service_uuid', 'type', 'server_uuid', 'image_uuid'] as const) {
        if (q[key] !== undefined) {
            parts.push(eq(key, q[key] as string));
        }
    }
    if (q.application_uuid !== undefined) {
        const services = await ctx.store.find<Service>(BUCKET_OF.service, eq('application_uuid', q.application_uuid as string));
        parts.push(
            oneOf(
                'service_uuid',
                services.items.map((s) => s.value.uuid),
            ),
        );
    }
    const filter = and(...parts);
    const page = parsePaging(params);
    const master = masterStore(ctx, params);
    const store = ctx.store;
    if (onlyUnindexed) {
        if (page) {
            throw invalidArgument('unindexed=true cannot be paged: leave out limit and marker (every match is streamed)');
        }
        const stores = [ctx.store, master].filter((s): s is Store => s !== null);
        let total = 0;
        for await (const chunk of streamAll(stores, filter, lacksIndexCopies)) {
            total += chunk.length;
        }
        return { total, stream: streamAll(stores, filter, lacksIndexCopies) };
    }
    // Looked up per request: the backend (and so the fast path) can change.
    const lists = omit && !master ? jsonLists(store) : null;
    if (omit && lists) {
        if (page) {
            return lists.findJson(BUCKET_OF.instance, filter, page, omit);
        }
        const { total, chunks } = await lists.streamJson(BUCKET_OF.instance, filter, 1000, omit);
        return { total, jsonStream: chunks };
    }
    if (page) {
        return findWithMaster<Instance>(ctx, params, BUCKET_OF.instance, filter, page);
    }
    const stores = [ctx.store, master].filter((s): s is Store => s !== null);
    let total = 0;
    for (const s of stores) {
        total += await s.count(BUCKET_OF.instance, filter);
    }
    return { total, stream: streamAll(stores, filter) };
}

/** A stored record without (or with stale) top-level index copies of its params. */
function lacksIndexCopies(inst: Instance): boolean {
    return staleIndexCopies(BUCKETS.instances, inst).length > 0;
}

/** Every match, chunk by chunk, store after store; `keep` drops records (chunks may come out empty). */
async function* streamAll(stores: Store[], filter: Filter, keep?: (inst: Instance) => boolean): AsyncIterable<Instance[]> {
    for (const store of stores) {
        for await (const chunk of store.iterate<Instance>(BUCKET_OF.instance, filter, 1000)) {
            const values = chunk.map((s) => s.value);
            yield keep ? values.filter(keep) : values;
        }
    }
}

// ---- update, upgrade, delete

export async function updateInstance(ctx: Ctx, uuid: string, params: Dict, ifMatch?: string[]): Promise<Stored<Instance>> {
    return updateObject<Instance>(
        ctx,
        { kind: 'instance', schemaId: 'UpdateInstance', fields: ['params', 'metadata', 'manifests'], finish: withIndexes },
        uuid,
        params,
        ifMatch,
    );
}

async function planFor(ctx: Ctx, inst: Instance): Promise<InstancePlan> {
    const { service, application } = await loadParents(ctx, inst.service_uuid);
    return { instance: inst, service, application, merged: mergeAttributes(application, service, inst) };
}

export async function upgradeInstance(
    ctx: Ctx,
    req: ReqInfo,
    uuid: string,
    params: Dict,
    opts: { imageChecked?: boolean; serverChecked?: boolean; signal?: AbortSignal } = {},
): Promise<CreateResult> {
    if (params.image_uuid === undefined || params.image_uuid === '') {
        throw missingParameter('missing image_uuid');
    }
    validateRequest('UpgradeInstance', params);
    const imageUuid = params.image_uuid;
    const inst = (await mustGet<Instance>(ctx.store, 'instance', uuid)).value;
    if (!deploys(ctx, req, inst)) {
        // Proto mode, or a v1 request on an agent: the record follows the intent.
        return { instance: await mergeParams(ctx, uuid, { image_uuid: imageUuid }) };
    }
    const deployer = requireDeployer(ctx, inst.type);
    const dreq: DeployReq = { reqId: req.reqId, log: req.log, async: flagValue(params.async), ...opts };
    return deployer.upgrade(dreq, await planFor(ctx, inst), imageUuid);
}

export async function deleteInstance(ctx: Ctx, req: ReqInfo, uuid: string): Promise<void> {
    const inst = (await mustGet<Instance>(ctx.store, 'instance', uuid)).value;
    if (!deploys(ctx, req, inst)) {
        await remove(ctx.store, 'instance', uuid);
        return;
    }
    const deployer = requireDeployer(ctx, inst.type);
    await deployer.destroy({ reqId: req.reqId, log: req.log, async: false }, await planFor(ctx, inst));
}

/**
 * Forget every agent instance of a server: records only, CNAPI is not called
 * (CNAPI calls this when a server is deleted or factory-reset); vm instances
 * are not touched.
 */
export async function deleteServerInstances(ctx: Ctx, serverUuid: string, dryRun: boolean): Promise<{ server_uuid: string; deleted: string[] }> {
    if (!isUuid(serverUuid)) {
        throw invalidArgument('server_uuid must be a UUID');
    }
    const found = await ctx.store.find<Instance>(BUCKET_OF.instance, and(eq('server_uuid', serverUuid), eq('type', 'agent')));
    const deleted: string[] = [];
    for (const s of found.items) {
        if (dryRun || (await removeIfPresent(ctx, s.value.uuid))) {
            deleted.push(s.value.uuid);
        }
    }
    return { server_uuid: serverUuid, deleted };
}
