// Attribute merge (application → service → instance) and the plain-data
// helpers every merge uses. The key "__proto__" (the only one a plain
// object's [[Set]] treats specially) is copied as an own data property, so
// it cannot reach a prototype; every other key is a plain assignment, which
// keeps the objects in V8's fast mode (defineProperty on every key did not).

import type { Application, Dict, Instance, Service } from './types.js';

export function copyInto(target: Dict, source: Dict | undefined): Dict {
    if (source) {
        for (const key of Object.keys(source)) {
            if (key === '__proto__') {
                // A plain assignment would set the prototype instead of a key.
                Object.defineProperty(target, key, { value: source[key], enumerable: true, writable: true, configurable: true });
            } else {
                target[key] = source[key];
            }
        }
    }
    return target;
}

export function mergeMaps(...maps: (Dict | undefined)[]): Dict {
    const out: Dict = {};
    for (const m of maps) {
        copyInto(out, m);
    }
    return out;
}

export interface Merged {
    params: Dict;
    metadata: Dict;
    manifests: Record<string, string>;
}

export function mergeAttributes(app: Application, svc: Service, inst?: Instance): Merged {
    return {
        params: mergeMaps(app.params, svc.params, inst?.params),
        metadata: mergeMaps(app.metadata, svc.metadata, inst?.metadata),
        manifests: mergeMaps(app.manifests, svc.manifests, inst?.manifests) as Record<string, string>,
    };
}

export function isPlainObject(v: unknown): v is Dict {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}
