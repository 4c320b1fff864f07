// Update actions on the inheritable maps (params, metadata, manifests, and an
// application's metadata_schema): update merges key by key, replace swaps
// the whole map, delete removes the named keys.

import { invalidArgument } from '../errors.js';
import type { JsonObject, Stored } from '../stor/store.js';
import { copyInto, isPlainObject } from './attributes.js';
import type { Ctx } from './context.js';
import { nonEmpty } from './lists.js';
import { checkManifestRefs } from './manifests.js';
import { modify } from './objects.js';
import type { Dict, Kind } from './types.js';
import { validateRequest } from './validate.js';
import type { RequestId } from '../../schemas/requests.js';

export type UpdateAction = 'update' | 'replace' | 'delete';

export function parseAction(raw: unknown): UpdateAction {
    if (raw === undefined || raw === null || raw === '') {
        return 'update';
    }
    const a = typeof raw === 'string' ? raw.toLowerCase() : '';
    if (a === 'update' || a === 'replace' || a === 'delete') {
        return a;
    }
    throw invalidArgument(`invalid action: ${typeof raw === 'string' ? raw : JSON.stringify(raw)}`);
}

/**
 * What an update request is validated as. Action delete reads only the keys
 * of each map (a named key is removed whatever its value), so for it the map values
 * are neither type-checked nor checked as manifest references.
 */
export function validatedShape(action: UpdateAction, body: Dict): Dict {
    if (action !== 'delete') {
        return body;
    }
    return Object.fromEntries(Object.entries(body).map(([k, v]) => [k, isPlainObject(v) ? {} : v]));
}

/** Apply `action` with `change` to one stored map; returns the new map. */
export function applyToMap(action: UpdateAction, stored: Dict | undefined, change: Dict): Dict {
    switch (action) {
        case 'update':
            return copyInto(copyInto({}, stored), change);
        case 'replace':
            return copyInto({}, change);
        case 'delete': {
            const out = copyInto({}, stored);
            for (const key of Object.keys(change)) {
                delete out[key];
            }
            return out;
        }
    }
}

/**
 * Apply the action to each of `fields` given (truthy) in `changes`.
 * Returns a new object; `obj` is not modified.
 */
export function applyUpdate<T extends Dict>(obj: T, action: UpdateAction, changes: Dict, fields: readonly string[]): T {
    const out = copyInto({}, obj) as T;
    for (const field of fields) {
        const change = changes[field];
        if (!change) {
            continue;
        }
        if (!isPlainObject(change)) {
            throw invalidArgument(`${field} must be object`);
        }
        const stored = out[field];
        copyInto(out, { [field]: applyToMap(action, isPlainObject(stored) ? stored : undefined, change) });
    }
    return out;
}

/** Update fields that are falsy are left alone (not changed): drop them before validating. */
export function withoutFalsy(body: Dict): Dict {
    return Object.fromEntries(Object.entries(body).filter(([, v]) => Boolean(v)));
}

export interface UpdateSpec<T> {
    kind: Kind;
    schemaId: RequestId;
    /** The inheritable maps the action applies to. */
    fields: readonly string[];
    /** Other body keys the update reads (e.g. owner_uuid). */
    extraKeys?: readonly string[];
    /** Final touches and checks on the changed object (throw to refuse). */
    finish?: (next: T, body: Dict) => T;
}

/**
 * PUT /<kind>/:uuid: validate, check manifest references, then apply
 * the action atomically (etag-conditional, retried; If-Match honoured).
 */
export async function updateObject<T extends JsonObject & { uuid: string }>(
    ctx: Ctx,
    spec: UpdateSpec<T>,
    uuid: string,
    params: Dict,
    ifMatch?: string[],
): Promise<Stored<T>> {
    const body = nonEmpty(params, ['action', ...spec.fields, ...(spec.extraKeys ?? [])]);
    const action = parseAction(body.action);
    const checked = validatedShape(action, body);
    validateRequest(spec.schemaId, withoutFalsy(checked));
    await checkManifestRefs(ctx.store, checked.manifests);
    return modify<T>(
        ctx.store,
        spec.kind,
        uuid,
        (current) => {
            const next = applyUpdate(current, action, body, spec.fields);
            return spec.finish ? spec.finish(next, body) : next;
        },
        ifMatch,
    );
}
