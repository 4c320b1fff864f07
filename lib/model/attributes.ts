// Attribute merge (application → service → instance) and the plain-data
// helpers every merge uses. Keys such as "__proto__" are copied as own
// data properties, never through [[Set]], so they cannot reach a prototype.

import type { Application, Dict, Instance, Service } from './types.js';

export function copyInto(target: Dict, source: Dict | undefined): Dict {
    if (source) {
        for (const key of Object.keys(source)) {
            Object.defineProperty(target, key, {
                value: source[key],
                enumerable: true,
                writable: true,
                configurable: true,
            });
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
