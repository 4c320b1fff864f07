// GetInstancePayload: the VMAPI createVm payload of a vm instance (merged
// params, forced owner/uuid/brand, filtered customer_metadata, rewritten
// networks); full-mode CreateInstance sends the same object.

import { copyInto, isPlainObject, mergeAttributes } from './attributes.js';
import type { Application, Dict, Instance, Service } from './types.js';

const PASSED_METADATA_KEYS = ['SAPI_URL', 'sapi_url', 'SAPI-URL', 'sapi-url', 'user-script', 'assets-ip'];
const LOWER_UUID = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

export function buildPayload(app: Application, svc: Service, inst: Instance): Dict {
    if (inst.type === 'agent') {
        return {};
    }
    const merged = mergeAttributes(app, svc, inst);
    const payload = copyInto({}, merged.params);
    payload.owner_uuid = app.owner_uuid;
    payload.uuid = inst.uuid;
    payload.brand = 'joyent-minimal';

    const metadata = copyInto({}, merged.metadata);
    metadata.SERVER_UUID = payload.server_uuid;
    metadata.ZONE_UUID = inst.uuid;

    const keys = [...PASSED_METADATA_KEYS];
    const extra = metadata.pass_vmapi_metadata_keys;
    if (Array.isArray(extra)) {
        keys.push(...extra.filter((k): k is string => typeof k === 'string'));
    }
    const customer: Dict = {};
    for (const k of keys) {
        if (metadata[k]) {
            copyInto(customer, { [k]: metadata[k] });
        }
    }
    payload.customer_metadata = customer;

    if (Array.isArray(payload.networks)) {
        payload.networks = payload.networks.map((n: unknown) => {
            if (typeof n === 'string') {
                return LOWER_UUID.test(n) ? { uuid: n } : { name: n };
            }
            return n;
        });
    }
    return payload;
}

export { isPlainObject };
