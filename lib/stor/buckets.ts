// Bucket definitions as data: the one source for SQLite tables/indexes and
// Moray bucket configs. Names and the version-0 indexes are SAPI 2.1.2's.
// Version 1 adds server_uuid and image_uuid on instances.
//
// An index field is a top-level field of the stored value, because that is
// the only place Moray reads index columns from. Some index fields are
// copies of a value kept elsewhere in the object (an instance's server and
// image live in `params`); SAPI 2.1.2 wrote no such copies, so every reader
// that needs a field's value asks indexFieldValue(), which looks where the
// data really is, and the Moray backfill writes the missing copies.

export type IndexType = 'string' | 'number' | 'boolean';

export interface IndexDef {
    type: IndexType;
    unique?: boolean;
}

export interface BucketDef {
    name: BucketName;
    index: Record<string, IndexDef>;
    version: number;
    /**
     * Multi-column indexes for the embedded store's common combined
     * searches (Moray has single-field indexes only and ignores these).
     */
    compound?: string[][];
    /**
     * Index fields copied from a nested value: field → path in the object.
     * The nested value is the truth; the top-level field is its copy.
     */
    derived?: Record<string, readonly string[]>;
}

export type BucketName = 'sapi_applications' | 'sapi_services' | 'sapi_instances' | 'sapi_manifests' | 'sapi_rollouts';

export const BUCKETS: Record<'applications' | 'services' | 'instances' | 'manifests' | 'rollouts', BucketDef> = {
    applications: {
        name: 'sapi_applications',
        version: 1,
        index: {
            uuid: { type: 'string', unique: true },
            name: { type: 'string' },
            owner_uuid: { type: 'string' },
        },
    },
    services: {
        name: 'sapi_services',
        version: 1,
        index: {
            uuid: { type: 'string', unique: true },
            name: { type: 'string' },
            application_uuid: { type: 'string' },
            type: { type: 'string' },
        },
    },
    instances: {
        name: 'sapi_instances',
        version: 1,
        index: {
            uuid: { type: 'string', unique: true },
            service_uuid: { type: 'string' },
            type: { type: 'string' },
            server_uuid: { type: 'string' },
            image_uuid: { type: 'string' },
        },
        compound: [
            ['service_uuid', 'image_uuid'],
            ['service_uuid', 'server_uuid'],
        ],
        derived: {
            server_uuid: ['params', 'server_uuid'],
            image_uuid: ['params', 'image_uuid'],
        },
    },
    manifests: {
        name: 'sapi_manifests',
        version: 1,
        index: {
            uuid: { type: 'string', unique: true },
        },
    },
    /** Agent rollouts (new in SAPI-TS): progress survives restarts. */
    rollouts: {
        name: 'sapi_rollouts',
        version: 1,
        index: {
            uuid: { type: 'string', unique: true },
            service_uuid: { type: 'string' },
            state: { type: 'string' },
        },
    },
};

export const ALL_BUCKETS: BucketDef[] = Object.values(BUCKETS);

/**
 * The buckets GetConfig documents are made of: on Moray their deletes
 * leave tombstones, the change feed tells their changes, and the local
 * cache follows them.
 */
export const CONFIG_BUCKETS: readonly BucketName[] = [BUCKETS.instances.name, BUCKETS.services.name, BUCKETS.applications.name, BUCKETS.manifests.name];

/**
 * Leases (leases/leases.ts, stor/lease-backend.ts), on Moray only: the key is the lease's key
 * ('server/<uuid>', 'rollout/<uuid>'), the value its record. Not a bucket
 * of objects: never cached locally, copied or migrated.
 */
export const LEASES_BUCKET: { name: 'sapi_leases'; version: number; index: Record<string, IndexDef> } = {
    name: 'sapi_leases',
    version: 1,
    index: {
        owner: { type: 'string' },
        expires_at: { type: 'string' },
    },
};

/**
 * Tombstones, on Moray only: Moray keeps no record of a delete, so every
 * delete SAPI-TS makes of an instance, service, application or manifest
 * also writes `<bucket>/<uuid>` here, in the same batch (lib/stor/moray).
 * GetConfig's change feed reads them by `_mtime` like the objects' own
 * changes; old ones are pruned. Not a bucket of objects: never cached
 * locally, copied or migrated.
 */
export const TOMBSTONES_BUCKET: { name: 'sapi_tombstones'; version: number; index: Record<string, IndexDef> } = {
    name: 'sapi_tombstones',
    version: 1,
    index: {},
};

export function bucketDef(name: BucketName): BucketDef {
    const def = ALL_BUCKETS.find((b) => b.name === name);
    if (!def) {
        throw new Error(`unknown bucket ${name}`);
    }
    return def;
}

function at(value: unknown, path: readonly string[]): unknown {
    let cur = value;
    for (const key of path) {
        if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) {
            return undefined;
        }
        cur = (cur as Record<string, unknown>)[key];
    }
    return cur;
}

/**
 * The value an index field has for `value`: for a derived field, the
 * nested value (else the top-level copy); otherwise the top-level field.
 * Only strings are indexed.
 */
export function indexFieldValue(def: BucketDef, value: Record<string, unknown>, field: string): string | null {
    const path = def.derived?.[field];
    const v = path ? (at(value, path) ?? value[field]) : value[field];
    return typeof v === 'string' ? v : null;
}

/**
 * Derived index fields whose top-level copy is missing or differs from the
 * nested value in `value` (rows written by SAPI 2.1.2, before the copies
 * existed). A top-level value without a nested one is left alone: it is
 * the only place that value is kept.
 */
export function staleIndexCopies(def: BucketDef, value: Record<string, unknown>): string[] {
    const out: string[] = [];
    for (const [field, path] of Object.entries(def.derived ?? {})) {
        const want = at(value, path);
        if (typeof want === 'string' && value[field] !== want) {
            out.push(field);
        }
    }
    return out;
}

/** `value` with every derived index field's nested value copied to the top level. */
export function withIndexCopies<T extends Record<string, unknown>>(def: BucketDef, value: T): T {
    const out: Record<string, unknown> = { ...value };
    for (const [field, path] of Object.entries(def.derived ?? {})) {
        const want = at(value, path);
        if (typeof want === 'string') {
            out[field] = want;
        }
    }
    return out as T;
}
