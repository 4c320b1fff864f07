// Instance records: the index copies every stored instance carries, and
// the record-level operations (no deployment) the model and the deployers
// share.

import type Logger from 'bunyan';

import { NotFoundError } from '../stor/errors.js';
import { and, eq, type Store, type Stored } from '../stor/store.js';
import { copyInto, isPlainObject } from './attributes.js';
import { BUCKET_OF, modify, storeError } from './objects.js';
import type { Dict, Instance } from './types.js';

/** What record operations need: the store, and a log for what they replace. */
export interface RecordDeps {
    readonly store: Store;
    readonly log: Logger;
}

/** Mirror params.server_uuid / params.image_uuid into the index fields. */
export function withIndexes(inst: Instance): Instance {
    const out = copyInto({}, inst) as Instance;
    delete out.server_uuid;
    delete out.image_uuid;
    const p = isPlainObject(inst.params) ? inst.params : {};
    if (typeof p.server_uuid === 'string') {
        out.server_uuid = p.server_uuid;
    }
    if (typeof p.image_uuid === 'string') {
        out.image_uuid = p.image_uuid;
    }
    return out;
}

/** The instances of a service on one server (agents: at most one after adoption). */
export async function onServer(deps: RecordDeps, serviceUuid: string, serverUuid: string): Promise<Stored<Instance>[]> {
    const found = await deps.store.find<Instance>(BUCKET_OF.instance, and(eq('service_uuid', serviceUuid), eq('server_uuid', serverUuid)));
    return found.items;
}

/** Delete a record; false when it was already gone. */
export async function removeIfPresent(deps: RecordDeps, uuid: string): Promise<boolean> {
    try {
        await deps.store.del(BUCKET_OF.instance, uuid);
        return true;
    } catch (err) {
        if (err instanceof NotFoundError) {
            return false;
        }
        throw storeError(err, 'instance', uuid);
    }
}

/** Shallow-merge keys into params (the index fields follow). */
export async function mergeParams(deps: RecordDeps, uuid: string, patch: Dict): Promise<Instance> {
    const out = await modify<Instance>(deps.store, 'instance', uuid, (cur) => withIndexes({ ...cur, params: copyInto(copyInto({}, cur.params), patch) }));
    return out.value;
}
