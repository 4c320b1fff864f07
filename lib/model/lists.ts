// Filters and paging shared by the List* operations.

import { invalidArgument } from '../errors.js';
import type { PageRequest } from '../stor/store.js';
import type { Dict } from './types.js';

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

/** A list result: either one page (with a total) or a stream of everything. */
export interface ListResult<T> {
    total: number;
    items?: T[];
    stream?: AsyncIterable<T[]>;
}
