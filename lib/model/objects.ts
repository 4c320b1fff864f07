// Store access shared by every kind: typed gets, create-if-absent, and
// atomic read-modify-write (etag-conditional put, retried on conflict).

import { BUCKETS, type BucketName } from '../stor/buckets.js';
import { EtagConflictError, NotFoundError } from '../stor/errors.js';
import type { JsonObject, Store, Stored } from '../stor/store.js';
import { invalidArgument, noSuch, preconditionFailed, toApiError, type SapiError } from '../errors.js';
import { KeyedQueue } from './keyed-queue.js';
import type { Kind } from './types.js';

export const BUCKET_OF: Record<Kind, BucketName> = {
    application: BUCKETS.applications.name,
    service: BUCKETS.services.name,
    instance: BUCKETS.instances.name,
    manifest: BUCKETS.manifests.name,
};

/**
 * A store error about one object, as an API error that names the object
 * ("no such <kind>: <uuid>"). The mapping itself is toApiError's, the same
 * one every route's error answer goes through.
 */
export function storeError(err: unknown, kind: Kind, uuid: string): SapiError {
    return toApiError(err, { kind, uuid });
}

export async function find<T extends JsonObject>(store: Store, kind: Kind, uuid: string): Promise<Stored<T> | null> {
    try {
        return await store.get<T>(BUCKET_OF[kind], uuid);
    } catch (err) {
        throw storeError(err, kind, uuid);
    }
}

export async function mustGet<T extends JsonObject>(store: Store, kind: Kind, uuid: string): Promise<Stored<T>> {
    const got = await find<T>(store, kind, uuid);
    if (!got) {
        throw noSuch(kind, uuid);
    }
    return got;
}

/** Insert; a duplicate uuid is 409 "<kind> already exists: <uuid>". */
export async function insert<T extends JsonObject & { uuid: string }>(store: Store, kind: Kind, value: T): Promise<Stored<T>> {
    try {
        return await store.put(BUCKET_OF[kind], value, { etag: null });
    } catch (err) {
        if (err instanceof EtagConflictError) {
            throw invalidArgument(`${kind} already exists: ${value.uuid}`);
        }
        throw storeError(err, kind, value.uuid);
    }
}

export async function remove(store: Store, kind: Kind, uuid: string, etag?: string): Promise<void> {
    try {
        await store.del(BUCKET_OF[kind], uuid, etag === undefined ? {} : { etag });
    } catch (err) {
        throw storeError(err, kind, uuid);
    }
}

const MAX_RETRIES = 20;

/** Per store, the read-modify-writes queued on each object. */
const queues = new WeakMap<Store, KeyedQueue>();

/**
 * Run the read-modify-writes of one object one after another in this
 * process. A write is committed with others at the next turn of the event
 * loop (group commit), so writers of one object that all read before any of
 * them committed would all but one conflict, again and again; queued, each
 * reads what the one before it wrote. Writers in other processes (several
 * SAPIs on Moray) still meet as etag conflicts, and retry.
 */
function oneAtATime<R>(store: Store, key: string, fn: () => Promise<R>): Promise<R> {
    let queue = queues.get(store);
    if (!queue) {
        queue = new KeyedQueue();
        queues.set(store, queue);
    }
    return queue.run(key, fn);
}

/**
 * Read-modify-write. With `ifMatch`, one conditional attempt (412 on a
 * mismatch); without, retried until no concurrent writer intervened.
 */
export function modify<T extends JsonObject & { uuid: string }>(
    store: Store,
    kind: Kind,
    uuid: string,
    change: (current: T) => T | Promise<T>,
    ifMatch?: string[],
): Promise<Stored<T>> {
    if (ifMatch) {
        // One conditional attempt: nothing to retry, nothing to queue.
        return modifyNow(store, kind, uuid, change, ifMatch);
    }
    return oneAtATime(store, `${kind}/${uuid}`, () => modifyNow(store, kind, uuid, change));
}

async function modifyNow<T extends JsonObject & { uuid: string }>(
    store: Store,
    kind: Kind,
    uuid: string,
    change: (current: T) => T | Promise<T>,
    ifMatch?: string[],
): Promise<Stored<T>> {
    for (let attempt = 0; ; attempt++) {
        const current = await mustGet<T>(store, kind, uuid);
        if (ifMatch && !ifMatch.includes('*') && !ifMatch.includes(current.etag)) {
            throw preconditionFailed(`${kind} ${uuid} does not match If-Match (current etag "${current.etag}")`);
        }
        const next = await change(current.value);
        try {
            return await store.put(BUCKET_OF[kind], next, { etag: current.etag });
        } catch (err) {
            if (err instanceof EtagConflictError) {
                if (ifMatch) {
                    throw preconditionFailed(`${kind} ${uuid} was changed by another request`);
                }
                if (attempt < MAX_RETRIES) {
                    continue;
                }
            }
            if (err instanceof NotFoundError) {
                throw noSuch(kind, uuid);
            }
            throw storeError(err, kind, uuid);
        }
    }
}

/** Drop undefined values, keeping key order (stored objects omit them). */
/** `obj` without its undefined fields (an optional field is absent, never undefined). */
export function compact<T extends Record<string, unknown>>(obj: { [K in keyof T]: T[K] | undefined }): T {
    // fromEntries defines own data properties (safe for any key name).
    return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}
