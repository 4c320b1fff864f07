// Bucket definitions as data: the one source for SQLite tables/indexes and
// Moray bucket configs. Names and the version-0 indexes are SAPI 2.1.2's.
// Version 1 adds server_uuid and image_uuid on instances (SAPI-296/297).

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

export function bucketDef(name: BucketName): BucketDef {
    const def = ALL_BUCKETS.find((b) => b.name === name);
    if (!def) {
        throw new Error(`unknown bucket ${name}`);
    }
    return def;
}
