// Filters and paging shared by the List* operations.

import { invalidArgument } from '../errors.js';
import type { BucketName } from '../stor/buckets.js';
import { masterOf } from '../stor/multi-dc.js';
import type { Filter, JsonObject, PageRequest, Store } from '../stor/store.js';
import type { Ctx } from './context.js';
import type { Dict } from './types.js';
import { flagValue, validateRequest } from './validate.js';
import type { RequestId } from '../../schemas/requests.js';

export const MAX_LIMIT = 1000;

/** `limit` (1–1000) and `marker` (uuid of the last item seen). */
export function parsePaging(params: Dict): PageRequest | undefined {
    const rawLimit = params.limit;
    const marker = params.marker === '' ? undefined : (params.marker as string | undefined);
    if ((rawLimit === undefined || rawLimit === '') && marker === undefined) {
        return undefined;
    }
    let limit = MAX_LIMIT;
    if (rawLimit !== undefined && rawLimit !== '') {
        limit = Number(rawLimit);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
            throw invalidArgument(`limit must be an integer between 1 and ${MAX_LIMIT}`);
        }
    }
    return { limit, marker };
}

/** Query values that are empty strings are ignored (2.1.2). */
export function nonEmpty(params: Dict, keys: readonly string[]): Dict {
    const out: Dict = {};
    for (const k of keys) {
        const v = params[k];
        if (v !== undefined && v !== '') {
            out[k] = v;
        }
    }
    return out;
}

const PAGING_KEYS = ['limit', 'marker', 'include_master'] as const;

/**
 * The filters of a List* request, validated with its paging params against
 * the route's schema. Empty values are ignored (2.1.2), filters and paging
 * alike.
 */
export function listQuery(schemaId: RequestId, params: Dict, filterKeys: readonly string[]): Dict {
    // A client paging by offset would get the first page again and again.
    if (params.offset !== undefined && params.offset !== '') {
        throw invalidArgument('offset is not supported: page with limit and marker (the uuid of the last item seen)');
    }
    // The paging values first: one message for every bad limit (0, -1, "ten").
    parsePaging(params);
    const q = nonEmpty(params, filterKeys);
    validateRequest(schemaId, { ...nonEmpty(params, PAGING_KEYS), ...q });
    return q;
}

/**
 * A list result: one page (with a total) or a stream of everything; either
 * as objects, or as JSON text already serialized by the store (fast path).
 */
export interface ListResult<T> {
    total: number;
    items?: T[];
    stream?: AsyncIterable<T[]>;
    json?: string[];
    jsonStream?: AsyncIterable<string[]>;
}

/**
 * Multi-DC: with `include_master` and a master configured, lists append the
 * master DC's objects; otherwise the flag is inert.
 */
export function masterStore(ctx: Ctx, params: Dict): Store | null {
    if (!flagValue(params.include_master)) {
        return null;
    }
    return masterOf(ctx.store);
}

/** Find locally, then append the master's matches when asked for. */
export async function findWithMaster<T extends JsonObject>(
    ctx: Ctx,
    params: Dict,
    bucket: BucketName,
    filter: Filter,
    page: PageRequest | undefined,
): Promise<ListResult<T>> {
    const local = await ctx.store.find<T>(bucket, filter, page);
    const master = masterStore(ctx, params);
    const items = local.items.map((s) => s.value);
    let total = local.total;
    if (master) {
        const remote = await master.find<T>(bucket, filter, page);
        items.push(...remote.items.map((s) => s.value));
        total += remote.total;
    }
    return { total, items };
}
